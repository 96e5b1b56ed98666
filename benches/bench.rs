//! `make bench`: the performance harness. It measures, on this machine, the
//! numbers the issues name (the Makefile prints the binary size first, of the
//! `make build` binary: the one built for benchmarks has dev-dependency
//! features unified into it): cold start to `/readyz`, idle RSS,
//! durable task throughput (in-process, real store, no-op executor), the
//! chat API's sustained throughput and latency at a fixed rate, and the
//! admin API over mutual TLS (task listing with keep-alive, new connections
//! with a full handshake). Every HTTP figure goes over mutual TLS with the
//! daemon's own local PKI, as a client on the same machine would. Every figure
//! is the median of several runs; the load generator shares the machine with
//! the daemon, as it would in production on a small host.
//!
//! Options (environment): `BENCH_RUNS` (default 5), `BENCH_SECONDS` (per HTTP
//! load run, default 10), `BENCH_TASKS` (per queue run, default 20000),
//! `BENCH_ONLY` (`queue`, `http` for the admin-API figures only, `gateway` for in-process command dispatch with
//! `BENCH_COMMANDS`/`BENCH_CLIENTS`, `micro` for sequential store round trips, `events` for
//! 100 SSE subscribers under 1,000 tasks/s — see `events.rs` for its knobs — or `telegram`
//! for the Telegram connector through the fake Bot API, also part of the full run, with
//! `BENCH_TG_MESSAGES` (burst size, default 10000) and `BENCH_TG_RSS_MESSAGES`/`BENCH_TG_RSS_BURST` (memory
//! run, default 100000 in bursts of 5000) and 3 runs unless `BENCH_RUNS` is set — see `telegram.rs`,
//! or `connectors` for the memory of `serve` with Telegram, Discord and IMAP connected, also part of
//! the full run, with `BENCH_CONN_MESSAGES` (default 100000) and its other knobs in `connectors.rs`,
//! or `scheduler` for 10,000 objectives idle, 1,000 due in one second and event objectives, also part
//! of the full run, knobs in `scheduler.rs`, or `tui` for the admin console — `tui --dump`
//! start to exit, RSS with 10,000 tasks listed, frame times and CPU under 1,000 events/s —
//! run under tmux, knobs in `tui.rs`, or `retrieval` for the markdown index — 10,000 files indexed at
//! start, RSS, 1,000 varied queries, an edited file searchable — knobs in `retrieval.rs`, also part of
//! the full run, or `quality` for the ranking's recall and MRR on real READMEs against two baselines,
//! see `quality.rs` and `scripts/retrieval-corpus.py`, or `backup` for an online backup of a ~1 GiB database
//! under 500 tasks/s with each snapshot method, knobs in `backup.rs`, or `agent` for the agent loop — per-step overhead of
//! in-process chat turns against a scripted model, and `BENCH_AGENT_CONCURRENT` (200) concurrent chat turns
//! through the binary with `BENCH_AGENT_TURNS`, `BENCH_AGENT_STEPS`, `BENCH_AGENT_FILES`,
//! `BENCH_AGENT_HTTP_FILES`, `BENCH_AGENT_ROUNDS`, `BENCH_AGENT_PART` (`loop`/`http`), 3 runs unless
//! `BENCH_RUNS` is set — see `agent.rs`),
//! `retention` for bounded growth (1,000,000 messages under a test clock with 1-day retention), the
//! `/metrics` scrape after 100,000 messages and the counting triggers' cost — knobs in `retention.rs`),
//! `BENCH_PRODUCERS` (concurrent submitters in the queue run, default 32),
//! `BENCH_DAEMON_ENV` (`K=V,K=V`: extra settings for every daemon started, for A/B experiments),
//! `BENCH_WORKER_THREADS` (tokio worker threads of the harness, default 2),
//! `BENCH_CONCURRENCY` (workers in the queue run, default 5 as the daemon's default).

#![allow(clippy::expect_used, reason = "a benchmark that cannot set up stops with a message")]

mod agent;
mod backup;
mod connectors;
#[path = "../tests/support/discord.rs"]
#[allow(dead_code, unused_imports, reason = "the benchmark uses part of the fake; its self-check tests are not built here")]
mod discord_fake;
mod events;
mod gateway;
#[path = "../tests/support/mail.rs"]
#[allow(dead_code, unused_imports, reason = "the benchmark uses part of the peers; their self-check tests are not built here")]
mod mail_peers;
mod quality;
mod retention;
mod retrieval;
mod scheduler;
mod telegram;
#[path = "../tests/support/telegram.rs"]
#[allow(dead_code, unused_imports, reason = "the benchmark uses part of the fake; its self-check tests are not built here")]
mod telegram_fake;
mod tui;

use agent_runtime::clock::SystemClock;
use agent_runtime::config::{NotifyConfig, OrchestratorConfig};
use agent_runtime::domain::{ChatRef, NewTask, NotifyPolicy, TaskKind, TaskStatus, TraceId};
use agent_runtime::orchestrator::{Executors, NoopExecutor, OrchestratorHandle, spawn_pool};
use agent_runtime::runtime::Supervisor;
use agent_runtime::store::Store;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_agent-runtime")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Daemon {
    child: Child,
    base: String,
    /// Over mutual TLS with the daemon's local-admin certificate (keep-alive pool).
    http: reqwest::Client,
    /// The same identity, but a new connection (full handshake) per request.
    fresh: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A client with the local PKI's admin certificate; `pool` false: no keep-alive.
fn tls_client(data: &std::path::Path, pool: bool) -> Option<reqwest::Client> {
    let pki = data.join("pki");
    let mut pem = std::fs::read(pki.join("clients/local-admin.pem")).ok()?;
    pem.push(b'\n');
    pem.extend(std::fs::read(pki.join("clients/local-admin-key.pem")).ok()?);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.pem")).ok()?).ok()?;
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).ok()?)
        .timeout(Duration::from_secs(10));
    b = if pool { b.pool_max_idle_per_host(256) } else { b.pool_max_idle_per_host(0) };
    b.build().ok()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the release binary on a fresh data dir (its first start, so it
/// creates the local PKI); returns it and the time to the first `/readyz`
/// 200 over mutual TLS.
async fn start_daemon(extra: &[(&str, &str)]) -> (Daemon, Duration) {
    start_daemon_in(tempfile::tempdir().expect("tempdir"), extra).await
}

/// Like [`start_daemon`], on `dir` (a data dir a stopped daemon left: a restart).
async fn start_daemon_in(dir: tempfile::TempDir, extra: &[(&str, &str)]) -> (Daemon, Duration) {
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .current_dir(dir.path())
        .env("AGENT_RUNTIME_DATA_DIR", dir.path().join("data"))
        .env("AGENT_RUNTIME_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("AGENT_RUNTIME_LOG", "warn")
        .env("AGENT_RUNTIME_LLM_PROVIDER", "none")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    // `BENCH_DAEMON_ENV="K=V,K=V"`: extra settings for every daemon the
    // harness starts (A/B experiments: one component off, a cap raised).
    for kv in std::env::var("BENCH_DAEMON_ENV").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').expect("BENCH_DAEMON_ENV is K=V,K=V");
        cmd.env(k.trim(), v.trim());
    }
    let url = format!("https://127.0.0.1:{port}/readyz");
    let data = dir.path().join("data");
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn serve");
    let mut http = None;
    loop {
        if http.is_none() {
            http = tls_client(&data, true);
        }
        if let Some(h) = &http
            && let Ok(r) = h.get(&url).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "daemon did not become ready");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready = started.elapsed();
    let http = http.expect("client");
    let fresh = tls_client(&data, false).expect("client");
    (Daemon { child, base: format!("https://127.0.0.1:{port}"), http, fresh, _dir: dir }, ready)
}

/// `BENCH_ONLY=micro`: sequential round trips through the store (the latency
/// of one write of each kind, and of an empty write and read: the thread
/// hand-offs), and enqueue throughput by number of concurrent callers.
async fn micro() {
    // Sequential round trips through the store: the latency of one write
    // of each kind, and of an empty write and read (the thread handoffs).
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("meta.sqlite")).expect("store");
    let ctx = store.ensure_context(&ChatRef::new("bench", "queue").expect("chat"), "bench", 0).await.expect("ctx");
    let n = 5000;
    let t = Instant::now();
    for _ in 0..n {
        let nt = noop_task(&ctx);
        store.enqueue_task(nt, 3, 0).await.expect("e");
    }
    println!("enqueue sequential: {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    for par in [8usize, 64] {
        let t = Instant::now();
        let mut joins = Vec::new();
        for _ in 0..par {
            let (store, ctx) = (store.clone(), ctx.clone());
            joins.push(tokio::spawn(async move {
                for _ in 0..n / par {
                    let nt = noop_task(&ctx);
                    store.enqueue_task(nt, 3, 0).await.expect("e");
                }
            }));
        }
        for j in joins {
            j.await.expect("join");
        }
        println!("enqueue with {par} concurrent callers: {:.0}/s", (n / par * par) as f64 / t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let mut claimed = Vec::new();
    for _ in 0..n {
        claimed.extend(store.claim_tasks("w".into(), 1, Duration::from_secs(30), 1).await.expect("c"));
    }
    println!("claim sequential: {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    let notify = NotifyConfig { policy: NotifyPolicy::Origin, success: None, failure: None };
    let notifier = agent_runtime::store::Notifier { config: notify, render: agent_runtime::orchestrator::render_notice };
    let retry = agent_runtime::store::RetryPolicy { base: Duration::from_secs(1), max: Duration::from_secs(1) };
    let t = Instant::now();
    for task in &claimed {
        store
            .finish_task(
                &task.id,
                "w".into(),
                agent_runtime::store::FinishOutcome::Succeeded { summary: "ok".into(), result_path: None },
                retry,
                notifier,
                2,
            )
            .await
            .expect("f");
    }
    println!("finish sequential: {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    for _ in 0..n {
        store.ping().await.expect("ping");
    }
    println!("read ping sequential: {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    for _ in 0..n {
        store.write_noop().await.expect("noop");
    }
    println!("write noop sequential: {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
}

/// The worker pool over `store` with `concurrency` workers running no-op
/// tasks (a notice per task to its origin); keep the supervisor alive.
fn noop_pool(store: &Store, concurrency: usize) -> (OrchestratorHandle, Supervisor, agent_runtime::orchestrator::Pool) {
    let cfg = OrchestratorConfig {
        concurrency,
        max_attempts: 3,
        lease: Duration::from_secs(30),
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(5),
    };
    let notify = NotifyConfig { policy: NotifyPolicy::Origin, success: None, failure: None };
    let handle = OrchestratorHandle::new(store.clone(), Arc::new(SystemClock), cfg, notify, Arc::new(tokio::sync::Notify::new()));
    let sup = Supervisor::new();
    let pool = spawn_pool(handle.clone(), Executors::default().with(TaskKind::Noop, Arc::new(NoopExecutor)), &sup);
    (handle, sup, pool)
}

fn noop_task(ctx: &agent_runtime::domain::Context) -> NewTask {
    NewTask {
        workspace_id: ctx.workspace_id.clone(),
        context_id: ctx.id.clone(),
        kind: TaskKind::Noop,
        title: "bench".into(),
        prompt: "noop".into(),
        run_key: None,
        source_user_id: None,
        trace_id: TraceId::random(),
        tell_origin: true,
    }
}

fn rss_line(pid: u32) -> String {
    let k = |f| rss_kib(pid, f) as f64 / 1024.0;
    format!("{:.1} MiB (anon {:.1}, file {:.1}; peak {:.1})", k("VmRSS:"), k("RssAnon:"), k("RssFile:"), k("VmHWM:"))
}

/// Seconds of CPU (user + system, every thread, living or not) of a process (`self` or a pid).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // In USER_HZ, which is 100 on every Linux ABI.
    (ticks(11) + ticks(12)) / 100.0
}

/// Waits until the daemon uses less than 2% of a core over 500 ms (its
/// tasks have run and their writes are done), at most 60 s; returns its CPU seconds then.
async fn quiesce(pid: &str) -> f64 {
    let t = Instant::now();
    let mut last = cpu_secs(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = cpu_secs(pid);
        if now - last < 0.01 || t.elapsed() > Duration::from_secs(60) {
            return now;
        }
        last = now;
    }
}

/// How long a memory figure waits after the daemon went quiet: its release
/// of memory comes after 2 s without store changes (`memory::QUIET`), plus
/// a second.
const SETTLE: Duration = Duration::from_secs(3);

/// `agent_runtime_memory_releases_total` from the daemon's `/metrics`
/// (times the quiet daemon gave memory back).
async fn memory_releases(d: &Daemon) -> u64 {
    let body = match d.http.get(format!("{}/metrics", d.base)).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    body.lines().find_map(|l| l.strip_prefix("agent_runtime_memory_releases_total ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// A target's verdict.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

async fn queue_throughput(tasks: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("meta.sqlite")).expect("store");
    let ctx = store.ensure_context(&ChatRef::new("bench", "queue").expect("chat"), "bench", 0).await.expect("ctx");
    let (handle, _sup, pool) = noop_pool(&store, env_usize("BENCH_CONCURRENCY", 5));
    let started = Instant::now();
    let submitted = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    let producers_n = env_usize("BENCH_PRODUCERS", 32);
    for _ in 0..producers_n {
        let (h, ctx, submitted) = (handle.clone(), ctx.clone(), submitted.clone());
        producers.push(tokio::spawn(async move {
            while submitted.fetch_add(1, Ordering::Relaxed) < tasks {
                let t = noop_task(&ctx);
                h.submit(t).await.expect("submit");
            }
        }));
    }
    for p in producers {
        p.await.expect("producer");
    }
    loop {
        let (queued, running) = store.unfinished_task_count().await.expect("counts");
        if queued + running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let counts = store.task_counts(None).await.expect("counts");
    let done = counts.iter().find(|(s, _)| *s == TaskStatus::Succeeded).map_or(0, |(_, n)| *n);
    assert_eq!(done as usize, tasks, "every task succeeded");
    let secs = started.elapsed().as_secs_f64();
    pool.drain(Duration::from_secs(5)).await;
    store.close();
    tasks as f64 / secs
}

fn chat_body(i: usize) -> String {
    format!(r#"{{"external_id":"bench-{}","text":"/task x"}}"#, i % 50)
}

/// Closed-loop load: `clients` callers each send `request(i)` (i = that
/// caller's running request number, spread over callers) until `seconds`
/// pass and read the whole answer; returns 200s per second.
async fn closed_loop<F>(clients: usize, seconds: u64, request: F) -> f64
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let ok = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut joins = Vec::new();
    for c in 0..clients {
        let (request, ok) = (request.clone(), ok.clone());
        joins.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < deadline {
                if let Ok(r) = request(i).send().await
                    && r.status() == 200
                    && r.bytes().await.is_ok()
                {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                i += clients;
            }
        }));
    }
    for j in joins {
        j.await.expect("client");
    }
    ok.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// `POST /api/v1/chat` with `/task x` over 50 chats, closed loop.
async fn sustained(http: &reqwest::Client, base: &str, seconds: u64, clients: usize) -> f64 {
    let (http, url) = (http.clone(), format!("{base}/api/v1/chat"));
    closed_loop(clients, seconds, move |i| http.post(&url).header("content-type", "application/json").body(chat_body(i))).await
}

/// Closed-loop `GET {base}{path}`.
async fn get_rate(http: &reqwest::Client, base: &str, path: &str, seconds: u64, clients: usize) -> f64 {
    let (http, url) = (http.clone(), format!("{base}{path}"));
    closed_loop(clients, seconds, move |_| http.get(&url)).await
}

/// Open-loop load at `rate` requests/s; returns (p50, p99) in ms and the error count.
async fn fixed_rate(http: &reqwest::Client, base: &str, seconds: u64, rate: u64) -> (f64, f64, usize) {
    let url = format!("{base}/api/v1/chat");
    let total = (seconds * rate) as usize;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now();
    let mut joins = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (http, url) = (http.clone(), url.clone());
        joins.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = http.post(&url).header("content-type", "application/json").body(chat_body(i)).send().await;
            let ok = r.is_ok_and(|r| r.status() == 200);
            (t.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut errors = 0;
    for j in joins {
        let (ms, ok) = j.await.expect("request");
        lat.push(ms);
        errors += usize::from(!ok);
    }
    lat.sort_by(f64::total_cmp);
    (percentile(&lat, 0.50), percentile(&lat, 0.99), errors)
}

fn main() {
    let threads = env_usize("BENCH_WORKER_THREADS", 2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let runs = env_usize("BENCH_RUNS", 5);
    let seconds = env_usize("BENCH_SECONDS", 10) as u64;
    let tasks = env_usize("BENCH_TASKS", 20_000);
    println!("# agent-runtime benchmarks ({} runs each; medians)", runs);
    println!("| measure | median | runs |\n|---|---|---|");

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only == "micro" {
        micro().await;
        return;
    }
    if only == "gateway" {
        let (total, clients) = (env_usize("BENCH_COMMANDS", 20_000), env_usize("BENCH_CLIENTS", 64));
        let (mut rates, mut lookups, mut checks) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let d = gateway::dispatch(total, clients).await;
            rates.push(d.rate);
            lookups.push(d.lookup_ns);
            checks.push(d.check_ns);
        }
        let rate = median(rates.clone());
        let (lookup, check) = (median(lookups.clone()), median(checks.clone()));
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let per_command_ns = cores * 1e9 / rate;
        println!(
            "| gateway dispatch `/help` `/status` `/task x`, in-process, {clients} callers | {rate:.0} commands/s (runs: {rates:.0?}) | {runs} |"
        );
        println!(
            "| permission checks per command (identity lookup in the write + rule check) | {lookup:.0} ns + {check:.1} ns = {:.2}% of the {:.0} µs of CPU a command takes ({cores} cores / rate); lookup runs: {lookups:.0?} | {runs} |",
            100.0 * (lookup + check) / per_command_ns,
            per_command_ns / 1000.0
        );
        return;
    }
    if only == "events" {
        return events::bench(runs, seconds).await;
    }
    if only == "telegram" {
        return telegram::bench(seconds).await;
    }
    if only == "connectors" {
        return connectors::bench().await;
    }
    if only == "scheduler" {
        return scheduler::bench(runs).await;
    }
    if only == "tui" {
        return tui::bench(runs).await;
    }
    if only == "quality" {
        return quality::run().await;
    }
    if only == "agent" {
        return agent::bench(env_usize("BENCH_RUNS", 3)).await;
    }
    if only == "backup" {
        return backup::bench(env_usize("BENCH_RUNS", 3)).await;
    }
    if only == "retention" {
        return retention::bench(env_usize("BENCH_RUNS", 3)).await;
    }
    if only == "retrieval" {
        return retrieval::bench(env_usize("BENCH_RUNS", 3)).await;
    }
    if only == "queue" {
        let mut tput = Vec::new();
        for _ in 0..runs {
            tput.push(queue_throughput(tasks).await);
        }
        println!("| durable task throughput | {:.0} tasks/s (runs: {tput:.0?}) | {runs} |", median(tput.clone()));
        return;
    }
    if only != "http" {
        startup_and_queue(runs, tasks).await;
    }
    http_figures(runs, seconds).await;
    if only.is_empty() {
        telegram::bench(seconds).await;
        connectors::bench().await;
        scheduler::bench(runs).await;
        retrieval::bench(runs.min(3)).await;
    }
}

/// Cold start, idle RSS and the queue.
async fn startup_and_queue(runs: usize, tasks: usize) {
    let mut ready = Vec::new();
    let mut rss = Vec::new();
    let mut last_rss = String::new();
    for _ in 0..runs {
        let (d, t) = start_daemon(&[]).await;
        ready.push(t.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss.push(rss_kib(d.child.id(), "VmRSS:") as f64 / 1024.0);
        last_rss = rss_line(d.child.id());
    }
    let r = ready.clone();
    println!(
        "| cold start to /readyz 200 (new data dir) | {:.1} ms (min {:.1}, max {:.1}) | {runs} |",
        median(ready),
        r.iter().cloned().fold(f64::MAX, f64::min),
        r.iter().cloned().fold(0.0, f64::max)
    );
    println!("| idle RSS of serve (2 s after ready) | {:.1} MiB (last run: {last_rss}) | {runs} |", median(rss));

    let mut tput = Vec::new();
    for _ in 0..runs {
        tput.push(queue_throughput(tasks).await);
    }
    println!(
        "| durable task throughput, enqueue→claim→complete, no-op executor, {} workers, {} submitters | {:.0} tasks/s (runs: {tput:.0?}; {tasks} tasks each) | {runs} |",
        env_usize("BENCH_CONCURRENCY", 5),
        env_usize("BENCH_PRODUCERS", 32),
        median(tput.clone())
    );
}

/// The admin API over mutual TLS: chat throughput and latency, task listing, new connections.
async fn http_figures(runs: usize, seconds: u64) {
    let (d, _) = start_daemon(&[]).await;
    let mut sus = Vec::new();
    for _ in 0..runs.min(3) {
        sus.push(sustained(&d.http, &d.base, seconds, 32).await);
    }
    println!(
        "| POST /api/v1/chat `/task x` over mTLS, 32 closed-loop clients, {seconds} s | {:.0} req/s (runs: {sus:.0?}) | {} |",
        median(sus.clone()),
        runs.min(3)
    );
    println!("| RSS after the closed-loop load | {} | 1 |", rss_line(d.child.id()));
    // Let the chat run's backlog (tens of thousands of tasks, failing at once
    // without a model) drain first, so the listing is measured on its own.
    let queued = format!("{}/api/v1/tasks?status=queued&limit=1", d.base);
    let drain_started = Instant::now();
    while drain_started.elapsed() < Duration::from_secs(120) {
        let v: serde_json::Value = d.http.get(&queued).send().await.expect("get").json().await.expect("json");
        if v["count"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut list = Vec::new();
    let mut fresh = Vec::new();
    for _ in 0..runs.min(3) {
        list.push(get_rate(&d.http, &d.base, "/api/v1/tasks?limit=50", seconds, 32).await);
        fresh.push(get_rate(&d.fresh, &d.base, "/healthz", seconds, 16).await);
    }
    println!(
        "| GET /api/v1/tasks?limit=50 over mTLS, keep-alive, 32 clients, {seconds} s | {:.0} req/s (runs: {list:.0?}) | {} |",
        median(list.clone()),
        runs.min(3)
    );
    println!(
        "| new mTLS connections (full handshake with client certificate + GET /healthz), 16 clients, {seconds} s | {:.0} /s (runs: {fresh:.0?}) | {} |",
        median(fresh.clone()),
        runs.min(3)
    );
    drop(d);
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut errors = 0;
    for _ in 0..runs.min(3) {
        // A fresh daemon each run, so no backlog from earlier runs is still draining.
        let (d, _) = start_daemon(&[]).await;
        let (a, b, e) = fixed_rate(&d.http, &d.base, seconds, 200).await;
        p50.push(a);
        p99.push(b);
        errors += e;
    }
    println!(
        "| POST /api/v1/chat `/task x` at 200 req/s open loop, {seconds} s: p50 / p99 | {:.2} ms / {:.2} ms ({errors} errors) | {} |",
        median(p50),
        median(p99),
        runs.min(3)
    );
}
