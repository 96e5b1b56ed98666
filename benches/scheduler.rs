//! `BENCH_ONLY=scheduler`: the scheduler's numbers (issue 15), on the release
//! binary over mutual TLS, each run on a fresh daemon:
//! - 10,000 active objectives (`BENCH_SCHED_OBJECTIVES`), none due soon: the
//!   daemon's idle CPU over `BENCH_SCHED_IDLE_SECONDS` (30) and its RSS
//!   growth over the empty daemon (both quiet, 3 s after the last change);
//! - 1,000 objectives (`BENCH_SCHED_DUE`) due in the same second: the lag
//!   from that second to each task being queued (`fired_at` in
//!   `objective_runs`), and that no scheduled time got two tasks;
//! - a markdown file written in the workspace → its event objective's task
//!   queued (`BENCH_SCHED_WRITES` files, 200 ms apart), debounce included.

use super::{Daemon, cpu_secs, env_usize, median, percentile, rss_kib, start_daemon};
use serde_json::{Value, json};
use std::time::Duration;

struct Run {
    rss_empty: f64,
    rss_loaded: f64,
    idle_cpu_pct: f64,
    create_per_s: f64,
    lag_ms: Vec<f64>,
    due_tasks: (i64, i64),
    event_ms: Vec<f64>,
    event_runs: usize,
}

/// A percentile, or NaN when nothing was measured (the count beside it says so).
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() { f64::NAN } else { percentile(sorted, p) }
}

fn unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid, "VmRSS:") as f64 / 1024.0
}

async fn post(d: &Daemon, path: &str, body: &Value) -> Value {
    let r = d.http.post(format!("{}{path}", d.base)).json(body).send().await.expect("request");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// Creates `n` objectives from 16 concurrent clients; returns objectives per second.
async fn create(d: &Daemon, n: usize, body: impl Fn(usize) -> Value + Send + Sync + 'static) -> f64 {
    let body = std::sync::Arc::new(body);
    let t = std::time::Instant::now();
    let workers = 16;
    let mut joins = Vec::new();
    for w in 0..workers {
        let (http, base, body) = (d.http.clone(), d.base.clone(), body.clone());
        joins.push(tokio::spawn(async move {
            for i in (w..n).step_by(workers) {
                let r = http.post(format!("{base}/api/v1/objectives")).json(&body(i)).send().await.expect("create");
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
            }
        }));
    }
    for j in joins {
        j.await.expect("creator");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

async fn run_once(objectives: usize, due: usize, writes: usize, idle_secs: u64) -> Run {
    // No model here: every objective task fails at once. Auto-pause is off,
    // or the event objective would pause itself after five failed runs and
    // the event figures would count five files instead of all of them.
    let (d, _) = start_daemon(&[("AGENT_RUNTIME_OBJECTIVE_MAX_CONSECUTIVE_FAILURES", "0")]).await;
    let pid = d.child.id();
    let data = d._dir.path().join("data");
    post(&d, "/api/v1/chat", &json!({"text": "/help"})).await;
    let ctxs: Value =
        d.http.get(format!("{}/api/v1/contexts?limit=10", d.base)).send().await.expect("contexts").json().await.expect("json");
    let (cid, wid) =
        (ctxs["items"][0]["id"].as_str().expect("ctx").to_string(), ctxs["items"][0]["workspace_id"].as_str().expect("ws").to_string());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_empty = rss_mib(pid);

    // Many objectives, none due for hours (daily, twelve hours from now).
    let (c, hour) = (cid.clone(), (unix_ms() / 3_600_000 + 12) % 24);
    let create_per_s = create(&d, objectives, move |i| {
        json!({"context_id": c, "title": format!("Objective {i}"), "prompt": "Report", "cron_expr": format!("{} {hour} * * *", i % 60)})
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_loaded = rss_mib(pid);
    let pid_s = pid.to_string();
    let cpu0 = cpu_secs(&pid_s);
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_cpu_pct = 100.0 * (cpu_secs(&pid_s) - cpu0) / idle_secs as f64;

    // Many due in the same second.
    let at = unix_ms() / 1000 + 15;
    let c = cid.clone();
    create(
        &d,
        due,
        move |i| json!({"context_id": c, "title": format!("Due {i}"), "prompt": "Report", "cron_expr": "@daily", "next_run_unix": at}),
    )
    .await;
    let wait = (at * 1000 + 5000 - unix_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let db = rusqlite::Connection::open_with_flags(data.join("agent-runtime/meta.sqlite"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("db");
    let mut lag_ms: Vec<f64> = db
        .prepare("SELECT fired_at - scheduled_at FROM objective_runs WHERE trigger = 'schedule' AND scheduled_at = ?1")
        .expect("sql")
        .query_map([at * 1000], |r| r.get::<_, i64>(0))
        .expect("query")
        .map(|v| v.expect("row") as f64)
        .collect();
    lag_ms.sort_by(f64::total_cmp);
    let due_tasks: (i64, i64) = db
        .query_row("SELECT COUNT(*), COUNT(DISTINCT run_key) FROM tasks WHERE kind = 'objective'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("tasks");

    // A workspace change to its event objective's task.
    post(
        &d,
        "/api/v1/objectives",
        &json!({"context_id": cid, "title": "Notes", "prompt": "Read", "trigger_type": "event", "event_key": "markdown.updated", "event_filter": "bench/*.md"}),
    )
    .await;
    let ws = data.join("workspaces").join(agent_runtime::workspace::sanitize_segment(&wid)).join("bench");
    std::fs::create_dir_all(&ws).expect("mkdir");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut written = Vec::new();
    for i in 0..writes {
        let name = format!("note-{i}.md");
        written.push((format!("bench/{name}"), unix_ms()));
        std::fs::write(ws.join(&name), format!("# Note {i}\n")).expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut event_ms = Vec::new();
    let mut event_runs = 0;
    for (path, t) in &written {
        let fired: Vec<i64> = db
            .prepare_cached("SELECT fired_at FROM objective_runs WHERE trigger = 'event' AND detail = ?1")
            .expect("sql")
            .query_map([path], |r| r.get(0))
            .expect("query")
            .map(|v| v.expect("row"))
            .collect();
        event_runs += fired.len();
        if let Some(f) = fired.first() {
            event_ms.push((f - t) as f64);
        }
    }
    event_ms.sort_by(f64::total_cmp);
    Run { rss_empty, rss_loaded, idle_cpu_pct, create_per_s, lag_ms, due_tasks, event_ms, event_runs }
}

pub async fn bench(runs: usize) {
    let objectives = env_usize("BENCH_SCHED_OBJECTIVES", 10_000);
    let due = env_usize("BENCH_SCHED_DUE", 1_000);
    let writes = env_usize("BENCH_SCHED_WRITES", 50);
    let idle = env_usize("BENCH_SCHED_IDLE_SECONDS", 30) as u64;
    let runs = runs.clamp(1, 3);
    let mut all = Vec::new();
    for _ in 0..runs {
        all.push(run_once(objectives, due, writes, idle).await);
    }
    let col = |f: &dyn Fn(&Run) -> f64| {
        let v: Vec<f64> = all.iter().map(f).collect();
        (median(v.clone()), v)
    };
    let (growth, gv) = col(&|r| r.rss_loaded - r.rss_empty);
    let (empty, _) = col(&|r| r.rss_empty);
    let (cpu, cv) = col(&|r| r.idle_cpu_pct);
    let (rate, _) = col(&|r| r.create_per_s);
    println!(
        "| {objectives} active objectives: RSS growth over the empty daemon ({empty:.1} MiB) | {growth:.1} MiB (runs {gv:.1?}) | {runs} |"
    );
    println!("| the same, idle CPU over {idle} s | {cpu:.2} % of a core (runs {cv:.2?}) | {runs} |");
    println!("| objectives created over the API (16 clients) | {rate:.0}/s | {runs} |");
    let (p50, _) = col(&|r| pct(&r.lag_ms, 0.5));
    let (p99, p99v) = col(&|r| pct(&r.lag_ms, 0.99));
    let (max, _) = col(&|r| *r.lag_ms.last().unwrap_or(&f64::NAN));
    let fired: Vec<usize> = all.iter().map(|r| r.lag_ms.len()).collect();
    let tasks: Vec<(i64, i64)> = all.iter().map(|r| r.due_tasks).collect();
    println!(
        "| {due} objectives due in the same second: scheduled time → task queued, p50 / p99 / max | {p50:.0} / {p99:.0} / {max:.0} ms (p99 runs {p99v:.0?}); fired {fired:?}; objective tasks, distinct run keys {tasks:?} | {runs} |"
    );
    let (e50, _) = col(&|r| pct(&r.event_ms, 0.5));
    let (e99, e99v) = col(&|r| pct(&r.event_ms, 0.99));
    let counts: Vec<usize> = all.iter().map(|r| r.event_runs).collect();
    println!(
        "| markdown file written → its event objective's task queued (debounce 500 ms included), p50 / p99 | {e50:.0} / {e99:.0} ms (p99 runs {e99v:.0?}); runs for {writes} files: {counts:?} | {runs} |"
    );
}
