//! `/metrics` (Prometheus text) and `/api/v1/heartbeat` (component health)
//! from the real binary over mutual TLS.

use crate::support::daemon::Daemon;
use crate::support::llm::{FakeLlm, Step};
use serde_json::{Value, json};

/// The value of the sample whose name-and-labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().expect("number")))
}

async fn scrape(d: &Daemon) -> String {
    let r = d.http.get(format!("{}/metrics", d.base)).send().await.expect("scrape");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().expect("ct").starts_with("text/plain; version=0.0.4"));
    r.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_tasks_messages_llm_calls_and_requests() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Reply("a haiku".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        dir.path(),
        &[
            ("AGENT_RUNTIME_LLM_BASE_URL", llm.base_url.clone()),
            ("AGENT_RUNTIME_LLM_MODEL", "test-model".into()),
            ("AGENT_RUNTIME_LLM_PRICES", "test-model=2/10".into()),
        ],
    )
    .await;
    let before = scrape(&d).await;
    assert_eq!(sample(&before, "agent_runtime_tasks{status=\"queued\"}"), Some(0.0), "{before}");
    assert_eq!(sample(&before, "agent_runtime_up"), Some(1.0));

    let reply = d.chat("/task write a haiku").await;
    let id = reply.strip_prefix("Task queued: `").and_then(|r| r.strip_suffix('`')).expect("task id").to_string();
    d.wait_task(&id, "the task to succeed", |t| t["status"] == "succeeded").await;
    let (s, _) = d.post("/api/v1/tasks", &json!({"prompt": ""})).await;
    assert_eq!(s, 400);
    d.get(&format!("/api/v1/tasks/{id}")).await;

    let text = scrape(&d).await;
    let v = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(v("agent_runtime_tasks{status=\"succeeded\"}"), 1.0);
    assert_eq!(v("agent_runtime_queue_depth"), 0.0);
    assert_eq!(v("agent_runtime_messages_total{connector=\"codex\",direction=\"inbound\",outcome=\"received\"}"), 1.0);
    assert_eq!(
        v("agent_runtime_messages_total{connector=\"codex\",direction=\"outbound\",outcome=\"sent\"}"),
        2.0,
        "the inline reply and the task notice"
    );
    assert_eq!(v("agent_runtime_llm_calls_total{provider=\"openai\",model=\"test-model-fake\",outcome=\"ok\"}"), 1.0);
    // The fake answers as `test-model-fake` with 11 prompt and 7 completion tokens;
    // the `test-model` price (2 and 10 USD per million) covers it by prefix.
    assert_eq!(v("agent_runtime_llm_tokens_total{provider=\"openai\",model=\"test-model-fake\",kind=\"prompt\"}"), 11.0);
    assert_eq!(v("agent_runtime_llm_tokens_total{provider=\"openai\",model=\"test-model-fake\",kind=\"completion\"}"), 7.0);
    let cost = v("agent_runtime_llm_cost_usd_total{provider=\"openai\",model=\"test-model-fake\"}");
    assert!((cost - (11.0 * 2.0 + 7.0 * 10.0) / 1e6).abs() < 1e-12, "{cost}");
    assert_eq!(v("agent_runtime_llm_call_duration_seconds_count{provider=\"openai\",model=\"test-model-fake\"}"), 1.0);
    assert_eq!(v("agent_runtime_http_requests_total{route=\"/api/v1/tasks\",method=\"POST\",status=\"400\"}"), 1.0);
    assert!(v("agent_runtime_http_requests_total{route=\"/api/v1/tasks/{id}\",method=\"GET\",status=\"200\"}") >= 1.0);
    assert!(!text.contains(&id), "routes are labelled by pattern, never by id");
    assert!(v("agent_runtime_http_request_duration_seconds_count{route=\"/api/v1/chat\"}") >= 1.0);
    assert_eq!(v("agent_runtime_component_healthy{component=\"store\",state=\"healthy\"}"), 1.0);
    assert_eq!(v("agent_runtime_approvals_pending"), 0.0);
    assert!(v("agent_runtime_outbox_messages{status=\"sent\"}") >= 1.0);
    // Every sample line is well formed: a name, optional labels, one number.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (_, value) = line.rsplit_once(' ').expect("name value");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_reports_each_component_and_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let hb = crate::support::wait_until("every component healthy", std::time::Duration::from_secs(10), || async {
        let (s, hb) = d.get("/api/v1/heartbeat").await;
        assert_eq!(s, 200, "{hb}");
        (hb["overall"] == "healthy").then_some(hb)
    })
    .await;
    let components: Vec<&Value> = hb["components"].as_array().expect("components").iter().collect();
    let names: Vec<&str> = components.iter().map(|c| c["name"].as_str().expect("name")).collect();
    for name in ["api", "orchestrator", "outbox", "runtime", "store"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    for (name, why) in [
        ("telegram", "AGENT_RUNTIME_TELEGRAM_TOKEN is not set"),
        ("discord", "AGENT_RUNTIME_DISCORD_TOKEN is not set"),
        ("email", "AGENT_RUNTIME_EMAIL_ENABLED is not true (or the IMAP settings are incomplete)"),
    ] {
        let c = components.iter().find(|c| c["name"] == name).expect("connectors are listed when off");
        assert_eq!((&c["state"], &c["message"]), (&json!("disabled"), &json!(why)));
    }
    let connectors = ["telegram", "discord", "email"];
    for c in components.iter().filter(|c| !connectors.contains(&c["name"].as_str().unwrap_or_default())) {
        assert_eq!(c["state"], "healthy", "{c}");
        assert_eq!(c["base_state"], "healthy", "{c}");
        assert!(c["updated_at_unix"].as_i64().expect("time") > 1_700_000_000, "{c}");
    }
    let api = components.iter().find(|c| c["name"] == "api").expect("api");
    assert!(api["beat_interval_seconds"].is_null(), "the listener reports once and is never stale: {api}");
    assert!(api["message"].as_str().expect("message").starts_with("listening on https://127.0.0.1:"), "{api}");
    let store = components.iter().find(|c| c["name"] == "store").expect("store");
    assert_eq!(store["beat_interval_seconds"], 1, "{store}");

    // Start-up transitions reach the event log (the heartbeat loop logs them
    // after it sees them, so not necessarily before the API reports healthy).
    crate::support::wait_until("the store's start-up transition in the event log", std::time::Duration::from_secs(10), || async {
        let (_, log) = d.get("/api/v1/events/log?types=health.").await;
        let items = log["items"].as_array().expect("items");
        items.iter().any(|e| e["data"]["component"] == "store" && e["data"]["to"] == "healthy").then_some(())
    })
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let off = Daemon::start(dir.path(), &[("AGENT_RUNTIME_HEARTBEAT_ENABLED", "false".into())]).await;
    let (s, b) = off.get("/api/v1/heartbeat").await;
    assert_eq!((s, b["status"].as_str()), (503, Some("unavailable")), "{b}");
}

/// The daemon's environment as the kernel shows it (`/proc/<pid>/environ`).
fn environ(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    raw.split(|b| *b == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
}

/// `serve` restarts itself once with its malloc settings (same PID), and a
/// daemon that has gone quiet after work gives memory back once — not while
/// idle, and not over and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_daemon_gives_memory_back_once_and_runs_with_its_malloc_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let env = environ(d.pid());
    assert!(env.iter().any(|v| v == "AGENT_RUNTIME_MALLOC_TUNED=1"), "not restarted with the settings: {env:?}");
    // glibc hands on only the first tunable in the environment it keeps.
    assert!(env.iter().any(|v| v.starts_with("GLIBC_TUNABLES=glibc.malloc.arena_max=2")), "{env:?}");
    assert!(!d.log().contains("AGENT_RUNTIME_MALLOC_TUNED"), "the restart marker is no typo: {}", d.log());

    let releases = |text: &str| sample(text, "agent_runtime_memory_releases_total").unwrap_or_else(|| panic!("no releases in\n{text}"));
    let before = releases(&scrape(&d).await);
    // Work that ends: `noop` tasks succeed at once and are never retried.
    let mut ids = Vec::new();
    for i in 0..20 {
        let (s, v) = d.post("/api/v1/tasks", &json!({"prompt": format!("job {i}"), "kind": "noop"})).await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["task"]["id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        d.wait_task(id, "a noop task to succeed", |t| t["status"] == "succeeded").await;
    }
    let after_work = crate::support::wait_until("memory given back after the work", std::time::Duration::from_secs(20), || async {
        let n = releases(&scrape(&d).await);
        (n > before).then_some(n)
    })
    .await;
    // Longer than the quiet period (2 s) twice over: the expiry pass writes
    // every second but changes nothing, so nothing is due again.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let text = scrape(&d).await;
    assert_eq!(releases(&text), after_work, "an idle daemon is released once per quiet spell");
    let rss = sample(&text, "process_resident_memory_bytes").expect("resident memory");
    assert!(rss > 1_000_000.0 && rss < 1_000_000_000.0, "{rss}");
    // The store works on after its caches were dropped: a write, then reads.
    let (s, v) = d.post("/api/v1/tasks", &json!({"prompt": "after the release", "kind": "noop"})).await;
    assert_eq!(s, 202, "{v}");
    d.wait_task(v["task"]["id"].as_str().expect("id"), "the task after the release", |t| t["status"] == "succeeded").await;
    let (s, v) = d.get("/api/v1/tasks?limit=50").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["items"].as_array().map_or(0, Vec::len), 21, "{v}");
}

/// An operator's own `GLIBC_TUNABLES` wins: no restart, and the log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_glibc_tunables_are_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=4".into())]).await;
    let env = environ(d.pid());
    assert!(!env.iter().any(|v| v.starts_with("AGENT_RUNTIME_MALLOC_TUNED")), "restarted anyway: {env:?}");
    assert!(env.iter().any(|v| v == "GLIBC_TUNABLES=glibc.malloc.arena_max=4"), "{env:?}");
    let log = d.log();
    assert!(log.contains("malloc settings from GLIBC_TUNABLES") && log.contains("glibc.malloc.arena_max=4"), "{log}");
}
