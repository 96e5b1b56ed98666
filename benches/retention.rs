//! `BENCH_ONLY=retention`: bounded growth and cheap metrics (issue 19).
//!
//! - growth: `BENCH_RET_MESSAGES` (default 1,000,000) chat messages driven
//!   through the real store in-process (no connectors: the rows a message
//!   leaves, as the Telegram path writes them), `BENCH_RET_PRODUCERS`
//!   (default 32) at a time: the inbox row, the reply (pending, then
//!   delivered; task notices go to admin chats, and there are none), every tenth a `/task` (enqueue, claim, finish with its
//!   notice) and a usage row. Time is a test clock: message `i` happens at
//!   `i * 432 ms` (100,000 messages = 12 hours), and every
//!   `BENCH_RET_PASS_EVERY` (10,000) messages a retention pass runs with
//!   every kind kept 1 day (plus the event log pruned to 1 day, as the
//!   daemon does), concurrently with the producers. Printed every 100,000:
//!   the database (page_count * page_size, free pages, WAL), the process
//!   RSS, the rate, the longest retention pass. `BENCH_RUNS` runs, then
//!   the medians of the plateau, the end size and the RSS.
//! - metrics: 100,000 messages (no retention) in a data dir, then the
//!   release `serve` on it, quiet: a `/healthz` (the first request after
//!   idle, timed apart), one `/metrics` scrape (cold), then 20, timed;
//!   the daemon's RSS before and after. For contrast, the old scrape's
//!   `GROUP BY status` scans on the same file, with the readers' 256 MiB
//!   mapping and with none (RssFile of this process before and after).
//!   `BENCH_RUNS` daemons, each on its own store, then the medians.
//! - the one-time `VACUUM` that converts a database made before
//!   incremental vacuum, on that 100,000-message file.
//! - the triggers' write cost: `BENCH_RET_TASKS` (20,000) tasks enqueued,
//!   claimed and finished in-process, with and without the counting
//!   triggers, `BENCH_RUNS` (3) runs each, interleaved.
//!
//! `BENCH_RET_PART` (`growth`, `metrics` or `triggers`) runs one part.

use super::{SETTLE, env_usize, median, noop_task, quiesce, rss_kib, start_daemon_in};
use agent_runtime::config::NotifyConfig;
use agent_runtime::domain::{ChatKind, ChatRef, Inbound, MessageKind, NotifyPolicy, TraceId};
use agent_runtime::orchestrator::render_notice;
use agent_runtime::store::retention::Kind;
use agent_runtime::store::{FinishOutcome, NewOutbound, Notifier, RetentionPolicy, RetryPolicy, Store, UsageRecord};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const STEP_MS: i64 = 432;
const BASE_MS: i64 = 1_800_000_000_000;
const DAY_MS: i64 = 86_400_000;
const LEASE: Duration = Duration::from_secs(30);

pub async fn bench(runs: usize) {
    // `BENCH_RET_PART` (`growth`, `metrics`, `triggers`): one part only.
    let part = std::env::var("BENCH_RET_PART").unwrap_or_default();
    if part.is_empty() || part == "growth" {
        growth(env_usize("BENCH_RET_MESSAGES", 1_000_000), runs).await;
    }
    if part.is_empty() || part == "metrics" {
        metrics_scrape(runs).await;
    }
    if part.is_empty() || part == "triggers" {
        trigger_cost(runs).await;
    }
}

fn notifier() -> Notifier {
    // Admin chats only, and there are none (as the connectors bench): one reply per message.
    Notifier { config: NotifyConfig { policy: NotifyPolicy::Admin, success: None, failure: None }, render: render_notice }
}

fn retry() -> RetryPolicy {
    RetryPolicy { base: Duration::from_secs(1), max: Duration::from_secs(1) }
}

fn self_kib(field: &str) -> u64 {
    rss_kib(std::process::id(), field)
}

/// One chat message's rows, at test time `at`.
async fn message(store: &Store, i: usize, at: i64) {
    let chat = ChatRef::new("telegram", &(500_000 + (i % 200)).to_string()).expect("chat");
    let text = if i.is_multiple_of(10) { format!("/task summarize report {i}") } else { format!("hello there, message number {i}") };
    let msg = Inbound {
        chat: chat.clone(),
        from_user_id: format!("{}", 900_000 + i % 200),
        display_name: "Bench User".into(),
        text,
        dedupe_key: format!("update:{i}"),
        kind: ChatKind::Private,
        mentioned: false,
        trace_id: TraceId::random(),
        meta: Default::default(),
    };
    let rec = store.record_inbound(&msg, at).await.expect("inbound");
    let mut reply = NewOutbound {
        chat,
        kind: MessageKind::Reply,
        body: format!("Got it: this is the answer to message {i}, with a few words more to look like a reply."),
        task_id: None,
        trace_id: Some(msg.trace_id.clone()),
        options: Default::default(),
        preview: None,
    };
    if i.is_multiple_of(10) {
        let t = store.enqueue_task(noop_task(&rec.context), 3, at).await.expect("enqueue").task;
        reply.task_id = Some(t.id.clone());
        let claimed = store.claim_tasks(format!("w{}", i % 5), at, LEASE, 1).await.expect("claim");
        for c in claimed {
            let done = FinishOutcome::Succeeded { summary: "done".into(), result_path: None };
            let _ = store.finish_task(&c.id, c.lease_owner.clone().unwrap_or_default(), done, retry(), notifier(), at).await;
        }
        store
            .record_usage(UsageRecord {
                at,
                provider: "openai".into(),
                model: "gpt-4o".into(),
                task_id: Some(t.id),
                context_id: Some(rec.context.id.clone()),
                prompt_tokens: Some(900),
                completion_tokens: Some(120),
                latency_ms: 800,
                outcome: "ok".into(),
                error: None,
            })
            .await
            .expect("usage");
    }
    let id = store.finish_inbound(rec.inbox_id, None, Some(reply), false, Vec::new(), at).await.expect("finish inbound");
    // Delivered at once (the dispatcher's write).
    if let Some(id) = id {
        store.mark_outbound_sent(id, Some("1".into()), at).await.expect("sent");
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

/// One line of the growth table, printed; returns (messages, file on disk MiB, RSS MiB).
async fn report(store: &Store, path: &Path, d: usize, elapsed: Duration, longest: u64) -> (usize, f64, f64) {
    let size = store.db_size().await.expect("size");
    let on_disk = std::fs::metadata(path).map_or(0, |m| m.len());
    let rss = self_kib("VmRSS:") as f64 / 1024.0;
    println!(
        "| {d} | {:.1} h | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.0} s | {:.0} msg/s | {longest} ms |",
        d as f64 * STEP_MS as f64 / 3.6e6,
        mib(size.file_bytes),
        mib(size.free_bytes),
        mib(size.wal_bytes),
        mib(on_disk),
        rss,
        elapsed.as_secs_f64(),
        d as f64 / elapsed.as_secs_f64()
    );
    (d, mib(on_disk), rss)
}

/// Drives `n` messages with `BENCH_RET_PRODUCERS` at a time; with `policy`,
/// a retention pass every `BENCH_RET_PASS_EVERY` messages; a table line
/// every 100,000 when `path` is given (the lines' figures are returned).
async fn drive(store: &Store, n: usize, policy: Option<RetentionPolicy>, path: Option<&Path>) -> Vec<(usize, f64, f64)> {
    let mut lines = Vec::new();
    let producers = env_usize("BENCH_RET_PRODUCERS", 32);
    let every = env_usize("BENCH_RET_PASS_EVERY", 10_000);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..producers {
        let (store, next, done) = (store.clone(), next.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                message(&store, i, BASE_MS + i as i64 * STEP_MS).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let (mut last_pass, mut last_report, mut longest) = (0, 0, 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = done.load(Ordering::Relaxed);
        let now = BASE_MS + d as i64 * STEP_MS;
        if let Some(p) = &policy
            && (d >= last_pass + every || d >= n)
        {
            last_pass = d;
            let t = Instant::now();
            store.prune(p, now, Duration::from_millis(5)).await.expect("prune");
            store.prune_events(now - DAY_MS).await.expect("prune events");
            longest = longest.max(t.elapsed().as_millis() as u64);
        }
        if let Some(path) = path
            && (d / 100_000 > last_report / 100_000 || d >= n)
        {
            last_report = d;
            lines.push(report(store, path, d, started.elapsed(), std::mem::take(&mut longest)).await);
        }
        if d >= n {
            break;
        }
    }
    for w in workers {
        w.await.expect("producer");
    }
    lines
}

/// One growth run's figures: the file's largest size once past 300,000
/// messages (1.5 days of test time, retention reached), its size at the end,
/// the bench process's largest and last RSS, MiB.
struct Grown {
    plateau: f64,
    end: f64,
    rss_max: f64,
    rss_end: f64,
}

/// [`growth_once`] `runs` times, then the medians.
async fn growth(n: usize, runs: usize) {
    let mut all = Vec::new();
    for _ in 0..runs {
        all.push(growth_once(n).await);
    }
    let fig = |f: &dyn Fn(&Grown) -> f64| {
        let each: Vec<String> = all.iter().map(|g| format!("{:.1}", f(g))).collect();
        format!("{:.1} (runs: {})", median(all.iter().map(f).collect()), each.join(", "))
    };
    println!("\n## retention growth, medians of {runs} runs\n");
    println!("| file on disk, largest from 300,000 messages on | {} MiB |", fig(&|g| g.plateau));
    println!("| file on disk at the end | {} MiB |", fig(&|g| g.end));
    println!("| RSS of the bench process, largest / at the end | {} / {} MiB |", fig(&|g| g.rss_max), fig(&|g| g.rss_end));
}

async fn growth_once(n: usize) -> Grown {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.sqlite");
    let store = Store::open(&path).expect("store");
    let mut policy = RetentionPolicy::forever();
    for k in Kind::ALL {
        policy.set(k, Some(1));
    }
    println!("\n## retention: {n} messages, every kind kept 1 day, test clock 432 ms per message (100k = 12 h)\n");
    println!("RSS before: {:.1} MiB\n", self_kib("VmRSS:") as f64 / 1024.0);
    println!(
        "| messages | test time | db (page_count*page_size) | free inside | WAL | file on disk | RSS (bench process) | elapsed | rate | longest pass since last line |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let lines = drive(&store, n, Some(policy), Some(&path)).await;
    let past = |min: usize| lines.iter().filter(move |(d, _, _)| *d >= min);
    let grown = Grown {
        plateau: past(300_000).map(|l| l.1).fold(0.0, f64::max),
        end: lines.last().map_or(0.0, |l| l.1),
        rss_max: past(0).map(|l| l.2).fold(0.0, f64::max),
        rss_end: lines.last().map_or(0.0, |l| l.2),
    };
    store.release_memory().await.expect("release");
    println!(
        "\nafter release_memory: RSS {:.1} MiB (anon {:.1}, file {:.1})",
        self_kib("VmRSS:") as f64 / 1024.0,
        self_kib("RssAnon:") as f64 / 1024.0,
        self_kib("RssFile:") as f64 / 1024.0
    );
    store.close();
    grown
}

/// `GROUP BY status` on tasks and outbox (the scrape before migration 12)
/// on a fresh read-only connection mapping `mmap` bytes: (ms, RssFile KiB added).
fn old_scan(path: &Path, mmap: i64) -> (f64, i64) {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    c.pragma_update(None, "mmap_size", mmap).expect("mmap");
    c.pragma_update(None, "cache_size", -256).expect("cache");
    let before = self_kib("RssFile:") as i64 + self_kib("RssAnon:") as i64;
    let t = Instant::now();
    for sql in ["SELECT status, count(*) FROM tasks GROUP BY status", "SELECT status, count(*) FROM outbox GROUP BY status"] {
        let mut s = c.prepare(sql).expect("prepare");
        let n: Vec<(String, i64)> = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("q").map(|r| r.expect("row")).collect();
        assert!(!n.is_empty());
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let after = self_kib("RssFile:") as i64 + self_kib("RssAnon:") as i64;
    (ms, after - before)
}

/// One daemon's scrape figures: the waking `/healthz` ms, first scrape ms, RSS added by both (MiB),
/// median of the next 20 (ms), RSS added after all 21 (MiB).
struct Scraped {
    wake_ms: f64,
    first_ms: f64,
    first_mib: f64,
    next_ms: f64,
    all_mib: f64,
}

/// [`metrics_once`] `runs` times (each on a store of its own), then the medians.
async fn metrics_scrape(runs: usize) {
    let mut all = Vec::new();
    for _ in 0..runs {
        all.push(metrics_once().await);
    }
    let fig = |f: &dyn Fn(&Scraped) -> f64, digits: usize| {
        let each: Vec<String> = all.iter().map(|g| format!("{:.digits$}", f(g))).collect();
        format!("{:.digits$} (runs: {})", median(all.iter().map(f).collect()), each.join(", "))
    };
    println!("\n## /metrics scrape, medians of {runs} daemons\n");
    println!("| first request after the quiet start (`/healthz`) | {} ms |", fig(&|g| g.wake_ms, 2));
    println!("| first scrape after start (right after it) | {} ms, RSS +{} MiB |", fig(&|g| g.first_ms, 2), fig(&|g| g.first_mib, 2));
    println!("| next 20 scrapes: median | {} ms; RSS +{} MiB after all 21 |", fig(&|g| g.next_ms, 2), fig(&|g| g.all_mib, 2));
}

async fn metrics_once() -> Scraped {
    let n = env_usize("BENCH_RET_SCRAPE_MESSAGES", 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("data/agent-runtime/meta.sqlite");
    let store = Store::open(&db).expect("store");
    let t = Instant::now();
    drive(&store, n, None, None).await;
    let size = store.db_size().await.expect("size");
    store.close();
    println!(
        "\n## /metrics after {n} messages (db {:.1} MiB, built in {:.0} s)\n",
        mib(size.file_bytes + size.wal_bytes),
        t.elapsed().as_secs_f64()
    );
    for (label, mmap) in [("256 MiB mapping (the readers' setting)", 256 * 1024 * 1024), ("no mapping", 0)] {
        let (ms, kib) = old_scan(&db, mmap);
        println!("| old scrape's two GROUP BY scans, fresh connection, {label} | {ms:.1} ms, RSS +{:.1} MiB |", kib as f64 / 1024.0);
    }
    let copy = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(copy.path().join("data/agent-runtime")).expect("mkdir");
    let conv = copy.path().join("data/agent-runtime/meta.sqlite");
    std::fs::copy(&db, &conv).expect("copy");
    {
        let c = rusqlite::Connection::open(&conv).expect("open");
        c.pragma_update(None, "auto_vacuum", "NONE").expect("none");
        c.execute_batch("VACUUM").expect("vacuum");
    }
    let t = Instant::now();
    Store::open(&conv).expect("convert").close();
    println!(
        "| one-time VACUUM to incremental (Store::open of a {:.1} MiB file made without it) | {:.0} ms |",
        mib(std::fs::metadata(&conv).map_or(0, |m| m.len())),
        t.elapsed().as_secs_f64() * 1000.0
    );
    drop(copy);

    let (d, _) = start_daemon_in(dir, &[]).await;
    let pid = d.child.id();
    quiesce(&pid.to_string()).await;
    tokio::time::sleep(SETTLE).await;
    let url = format!("{}/metrics", d.base);
    let rss0 = rss_kib(pid, "VmRSS:");
    // The first request after the quiet seconds pays this machine's wake-up
    // (idle vCPUs: ~20 ms after 5 s idle even for python's http.server), so
    // a /healthz goes first and is timed on its own.
    let t = Instant::now();
    d.http.get(format!("{}/healthz", d.base)).send().await.expect("healthz").text().await.expect("body");
    let wake_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let body = d.http.get(&url).send().await.expect("scrape").text().await.expect("body");
    let first = t.elapsed().as_secs_f64() * 1000.0;
    assert!(body.contains("agent_runtime_database_bytes"), "{body}");
    let rss1 = rss_kib(pid, "VmRSS:");
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        d.http.get(&url).send().await.expect("scrape").text().await.expect("body");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let rss2 = rss_kib(pid, "VmRSS:");
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!("| the first request after the quiet start (`/healthz`) | {wake_ms:.2} ms |");
    println!(
        "| /metrics scrape, keep-alive mTLS, first after start (right after that /healthz) | {first:.2} ms; RSS {:.1} → {:.1} MiB (+{:.2} MiB, the /healthz included) |",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1 as f64 - rss0 as f64) / 1024.0
    );
    let next_ms = median(times);
    println!(
        "| /metrics scrape, next 20 | median {next_ms:.2} ms, max {:.2} ms; RSS after them {:.1} MiB (+{:.2} MiB over before the first) |",
        sorted.last().copied().unwrap_or(0.0),
        rss2 as f64 / 1024.0,
        (rss2 as f64 - rss0 as f64) / 1024.0
    );
    Scraped {
        wake_ms,
        first_ms: first,
        first_mib: (rss1 as f64 - rss0 as f64) / 1024.0,
        next_ms,
        all_mib: (rss2 as f64 - rss0 as f64) / 1024.0,
    }
}

/// enqueue→claim→finish of `n` tasks, 32 at a time, in-process; tasks/s.
async fn task_rate(path: &Path, n: usize) -> f64 {
    let store = Store::open(path).expect("store");
    let ctx = store.ensure_context(&ChatRef::new("bench", "triggers").expect("chat"), "bench", 0).await.expect("ctx");
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut workers = Vec::new();
    for w in 0..32 {
        let (store, ctx, next) = (store.clone(), ctx.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                store.enqueue_task(noop_task(&ctx), 3, 1).await.expect("enqueue");
                for c in store.claim_tasks(format!("w{w}"), 1, LEASE, 1).await.expect("claim") {
                    let done = FinishOutcome::Succeeded { summary: "done".into(), result_path: None };
                    let _ = store.finish_task(&c.id, format!("w{w}"), done, retry(), notifier(), 1).await;
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    store.close();
    rate
}

async fn trigger_cost(runs: usize) {
    let n = env_usize("BENCH_RET_TASKS", 20_000);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir().expect("tempdir");
        with.push(task_rate(&dir.path().join("a.sqlite"), n).await);
        let b = dir.path().join("b.sqlite");
        Store::open(&b).expect("store").close();
        rusqlite::Connection::open(&b)
            .expect("open")
            .execute_batch(
                "DROP TRIGGER tasks_count_insert; DROP TRIGGER tasks_count_delete; DROP TRIGGER tasks_count_update;
                 DROP TRIGGER outbox_count_insert; DROP TRIGGER outbox_count_delete; DROP TRIGGER outbox_count_update;",
            )
            .expect("drop triggers");
        without.push(task_rate(&b, n).await);
    }
    println!("\n## the counting triggers' write cost ({n} tasks enqueue→claim→finish, 32 callers, in-process)\n");
    println!("| with triggers | {:.0} tasks/s (runs {with:.0?}) |", median(with.clone()));
    println!("| without (dropped) | {:.0} tasks/s (runs {without:.0?}) |", median(without.clone()));
}
