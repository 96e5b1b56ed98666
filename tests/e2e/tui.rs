//! The admin console against the real daemon: its own loop (the one the
//! terminal runs) on a `TestBackend`, driven by scripted key events, acts
//! through the API — each effect checked through the API afterwards — and
//! `tui --dump` through the real binary.

use crate::approvals::receiver;
use crate::support::daemon::{Daemon, command};
use crate::support::llm::{FakeLlm, Step, llm_env};
use crate::support::wait_until;
use agent_runtime::client::{ApiClient, ClientTls};
use agent_runtime::tui::app::App;
use agent_runtime::tui::render::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The console of a running daemon: keys go in, frames come out.
struct Console {
    keys: mpsc::UnboundedSender<std::io::Result<Event>>,
    frames: watch::Receiver<String>,
    done: tokio::task::JoinHandle<App>,
}

fn client(data: &Path, base: &str) -> ApiClient {
    let pki = data.join("pki");
    let tls = ClientTls { cert: pki.join("clients/local-admin.pem"), key: pki.join("clients/local-admin-key.pem"), ca: pki.join("ca.pem") };
    ApiClient::new(base, Duration::from_secs(10), Some(&tls)).expect("client")
}

impl Console {
    fn open(data: &Path, base: &str) -> Console {
        let (keys, rx) = mpsc::unbounded_channel();
        let (tx, frames) = watch::channel(String::new());
        let events = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        let api = client(data, base);
        let done = tokio::spawn(async move {
            let mut terminal = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
            let app = App::new(agent_runtime::clock::Clock::now_ms(&agent_runtime::clock::SystemClock));
            let events = Box::pin(events);
            agent_runtime::tui::run_loop(&mut terminal, api, app, events, Theme { color: false }, Some(tx)).await.expect("console loop")
        });
        Console { keys, frames, done }
    }

    fn press(&self, c: char) {
        let code = match c {
            '\n' => KeyCode::Enter,
            c => KeyCode::Char(c),
        };
        self.keys.send(Ok(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))).expect("console running");
    }

    fn type_text(&self, text: &str) {
        text.chars().for_each(|c| self.press(c));
    }

    /// Waits until the screen shows something `pred` accepts; returns it.
    async fn wait_screen(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.frames.borrow_and_update().clone();
            if pred(&screen) {
                return screen;
            }
            match tokio::time::timeout_at(deadline, self.frames.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!("the console never showed {what}; last frame:\n{screen}"),
            }
        }
    }

    async fn quit(self) -> App {
        self.press('q');
        tokio::time::timeout(Duration::from_secs(10), self.done).await.expect("the console quits on q").expect("console task")
    }
}

/// The line of `screen` holding the table row marked as selected.
fn selected_row(screen: &str) -> &str {
    // The table's marker follows its left border; the sidebar's starts a line.
    screen.lines().find(|l| l.contains("│›")).unwrap_or("")
}

async fn propose(d: &Daemon, url: &str, text: &str) -> String {
    let body = json!({"action_type": "webhook", "target": url, "summary": format!("say {text}"), "payload": {"text": text}});
    let (s, a) = d.post("/api/v1/approvals", &body).await;
    assert_eq!(s, 201, "{a}");
    a["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consoles_own_loop_approves_denies_cancels_and_pauses_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let llm = FakeLlm::start().await;
    let d = Daemon::start(dir.path(), &llm_env(Some(&llm))).await;
    let (url, calls) = receiver().await;
    let first = propose(&d, &url, "approve me").await;
    let second = propose(&d, &url, "deny me").await;
    // A task whose model call never answers: running until canceled.
    llm.push([Step::Stall]);
    let (s, t) = d.post("/api/v1/tasks", &json!({"prompt": "think forever", "title": "Long think"})).await;
    assert_eq!(s, 202, "{t}");
    let task = t["task"]["id"].as_str().expect("task id").to_string();
    d.wait_task(&task, "the task to run", |v| v["status"] == "running").await;
    let (_, ctx) = d.get("/api/v1/contexts?limit=1").await;
    let body = json!({"context_id": ctx["items"][0]["id"], "title": "Nightly digest", "prompt": "Digest", "cron_expr": "0 3 * * *"});
    let (s, o) = d.post("/api/v1/objectives", &body).await;
    assert_eq!(s, 201, "{o}");

    let mut console = Console::open(&d.data(), &d.base);
    console.wait_screen("the overview, live", |s| s.contains("● live") && s.contains("2 pending")).await;
    console.press('2');
    // Tables show an id's last 8 characters (ids made together share their start).
    let (first_short, second_short) = (&first[first.len() - 8..], &second[second.len() - 8..]);
    let screen = console.wait_screen("both approvals", |s| s.contains(first_short) && s.contains(second_short)).await;
    assert!(selected_row(&screen).contains(first_short), "the oldest pending is selected first:\n{screen}");
    assert!(screen.contains(&first), "its whole id heads the details:\n{screen}");
    assert!(screen.contains("\"text\": \"approve me\""), "the payload is shown before approving:\n{screen}");
    console.press('a');
    console.wait_screen("the confirmation", |s| s.contains("[y/N]")).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing runs before the answer");
    console.press('y');
    wait_until("the webhook to run", Duration::from_secs(10), || async { (calls.load(Ordering::SeqCst) == 1).then_some(()) }).await;
    let (_, a) = d.get(&format!("/api/v1/approvals/{first}")).await;
    assert_eq!((a["status"].as_str(), a["approver"].as_str()), (Some("approved"), Some("cert:local-admin")), "{a}");

    // The list refreshes from the approval's events: the other one is pending at the top.
    console.wait_screen("the second approval selected", |s| selected_row(s).contains(second_short)).await;
    console.press('d');
    console.type_text("not today");
    console.press('\n');
    let a = wait_until("the denial", Duration::from_secs(10), || async {
        let (_, a) = d.get(&format!("/api/v1/approvals/{second}")).await;
        (a["status"] == "denied").then_some(a)
    })
    .await;
    assert_eq!(a["reason"].as_str(), Some("not today"), "{a}");

    console.press('3');
    let short = &task[28..];
    console.wait_screen("the running task", |s| s.contains(short) && s.contains("running")).await;
    console.press('c');
    console.wait_screen("the cancel question", |s| s.contains("Cancel task")).await;
    console.press('y');
    let v = d.wait_task(&task, "the cancel", |v| v["status"] == "canceled" || v["cancel_requested"] == true).await;
    assert!(v["status"] == "canceled" || v["cancel_requested"] == true, "{v}");

    console.press('4');
    console.wait_screen("the objective", |s| s.contains("Nightly digest")).await;
    console.press('p');
    console.press('y');
    let id = o["id"].as_str().expect("id");
    let o = wait_until("the pause", Duration::from_secs(10), || async {
        let (_, o) = d.get(&format!("/api/v1/objectives/{id}")).await;
        (o["active"] == false).then_some(o)
    })
    .await;
    assert_eq!(o["health_state"], "paused", "{o}");
    console.wait_screen("the paused objective", |s| s.contains("paused")).await;

    let app = console.quit().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the denied action never ran, the approved one once");
    let kinds: Vec<&str> = app.activity.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"approval.approved") && kinds.contains(&"approval.denied"), "the activity feed saw it live: {kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_console_refuses_locally_and_the_api_would_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let (url, calls) = receiver().await;
    let id = propose(&d, &url, "no").await;
    let out = command(dir.path(), &[]).args(["pki", "issue-client", "vera", "--role", "viewer"]).output().expect("pki");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pki = d.data().join("pki");
    let tls = ClientTls { cert: pki.join("clients/vera.pem"), key: pki.join("clients/vera-key.pem"), ca: pki.join("ca.pem") };
    let api = ApiClient::new(&d.base, Duration::from_secs(10), Some(&tls)).expect("client");
    let (keys, rx) = mpsc::unbounded_channel::<std::io::Result<Event>>();
    let (tx, mut frames) = watch::channel(String::new());
    let events = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }));
    let mut app = App::new(0);
    app.view = agent_runtime::tui::app::View::Approvals;
    let done = tokio::spawn(async move {
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("terminal");
        agent_runtime::tui::run_loop(&mut terminal, api, app, events, Theme { color: false }, Some(tx)).await.expect("loop")
    });
    let screen = wait_until("the viewer's approvals", Duration::from_secs(20), || {
        let s = frames.borrow_and_update().clone();
        let shown = s.contains(&id[id.len() - 8..]);
        async move { shown.then_some(s) }
    })
    .await;
    assert!(screen.contains("cert:vera (viewer)") && screen.contains("disabled: needs the admin role"), "{screen}");
    let key = |c| Ok(Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)));
    keys.send(key('a')).expect("send");
    keys.send(key('y')).expect("send");
    keys.send(key('q')).expect("send");
    let app = tokio::time::timeout(Duration::from_secs(10), done).await.expect("quits").expect("task");
    assert!(app.status.as_ref().is_some_and(|(t, e)| *e && t.contains("needs the admin role")), "{:?}", app.status);
    let (_, a) = d.get(&format!("/api/v1/approvals/{id}")).await;
    assert_eq!((a["status"].as_str(), calls.load(Ordering::SeqCst)), (Some("pending"), 0), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_prints_a_view_and_fails_clearly_without_a_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(dir.path(), &[]).await;
    let id = propose(&d, "https://hooks.example.com/deploy", "ship it").await;
    let out = command(dir.path(), &[]).args(["tui", "--dump", "approvals", "--size", "100x30"]).output().expect("dump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().count(), 30, "{text}");
    assert!(
        text.contains(&id[id.len() - 8..])
            && text.contains(&id)
            && text.contains("\"text\": \"ship it\"")
            && text.contains("https://hooks.example.com/deploy"),
        "{text}"
    );
    let out = command(dir.path(), &[]).args(["tui", "--dump", "nope"]).output().expect("dump");
    assert_eq!(out.status.code(), Some(2), "a bad view is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown view \"nope\""));
    d.terminate().await;
    let out = command(dir.path(), &[]).args(["tui", "--dump", "overview"]).output().expect("dump");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach agent-runtime"), "{err}");
    assert!(out.stdout.is_empty(), "no frame when the daemon is away");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_survives_a_daemon_restart_and_resumes_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("AGENT_RUNTIME_HTTP_ADDR", format!("127.0.0.1:{}", free_port())), ("AGENT_RUNTIME_LLM_PROVIDER", "none".into())];
    let mut d = Daemon::start(dir.path(), &env).await;
    d.post("/api/v1/tasks", &json!({"prompt": "before", "kind": "noop"})).await;
    let mut console = Console::open(&d.data(), &d.base);
    console.press('7');
    console.wait_screen("the activity feed, live", |s| s.contains("● live") && s.contains("task.succeeded")).await;
    d.terminate().await;
    console.wait_screen("the outage", |s| s.contains("daemon unreachable") && s.contains("task.succeeded")).await;
    let d = Daemon::start(dir.path(), &env).await;
    let (s, t) = d.post("/api/v1/tasks", &json!({"prompt": "after", "kind": "noop", "title": "after the restart"})).await;
    assert_eq!(s, 202, "{t}");
    let after = t["task"]["id"].as_str().expect("id").to_string();
    d.wait_task(&after, "the task", |v| v["status"] == "succeeded").await;
    console.wait_screen("the resumed feed", |s| s.contains("● live") && s.contains("reconnected")).await;
    let (_, log) = d.get("/api/v1/events/log?limit=1000").await;
    let head = log["head"].as_i64().expect("head");
    console.wait_screen("the newest event of the log", |s| s.contains(&format!("{head:>7} "))).await;
    let app = console.quit().await;
    let ids: Vec<i64> = app.activity.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "no event twice, in order: {ids:?}");
    let all: Vec<i64> = log["items"].as_array().expect("items").iter().filter_map(|e| e["id"].as_i64()).collect();
    let first_seen = ids[0];
    let expected: Vec<i64> = all.into_iter().filter(|i| *i >= first_seen).collect();
    assert_eq!(ids, expected, "every event of the log since the console opened, none missing across the restart");
    assert!(app.activity.iter().any(|e| e.data["task_id"] == after.as_str()), "events from after the restart arrived");
}
