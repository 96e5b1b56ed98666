//! `BENCH_ONLY=backup`: an online backup of a large database while tasks
//! stream in (issue 19: "backup of a 1 GiB database while 500 tasks/s are
//! written: completes, and the task rate stays ≥ 80 % of the rate without
//! a backup").
//!
//! The database is the real store's (migrations, one writer thread, the
//! orchestrator's worker pool with no-op tasks: enqueue, claim, finish), padded
//! with finished tasks carrying 3 KB prompts to `BENCH_BACKUP_MIB` (1024).
//! A producer submits `BENCH_BACKUP_RATE` (500) tasks a second on a fixed
//! schedule (open loop: a slow commit does not slow the schedule). Each run
//! measures the task rate (the lower of submits acknowledged and tasks
//! finished per second) and the submit latency over
//! `BENCH_BACKUP_BASE_SECONDS` (10) without a backup, then during a backup
//! taken with each method (`backup::create` on a blocking thread, as the
//! CLI runs it; the archive is written to the same disk), with a baseline
//! window before each. `BENCH_RUNS` runs (3); medians.

use super::{env_usize, median, noop_pool, noop_task, percentile};
use agent_runtime::backup::{self, Method, Options, Sources};
use agent_runtime::domain::ChatRef;
use agent_runtime::store::Store;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Submits acknowledged, and (when acknowledged, latency ms) of each.
#[derive(Default)]
struct Acks {
    count: AtomicU64,
    latencies: Mutex<Vec<(Instant, f64)>>,
}

/// One backup's figures.
#[derive(Clone, Copy)]
struct Row {
    secs: f64,
    snapshot: f64,
    base: f64,
    during: f64,
    ratio: f64,
    p99: f64,
    archive_mib: f64,
}

struct Window {
    rate: f64,
    p50: f64,
    p99: f64,
}

impl Acks {
    fn window(&self, from: Instant, to: Instant, acked: u64) -> Window {
        let mut l: Vec<f64> =
            self.latencies.lock().expect("latencies").iter().filter(|(at, _)| *at >= from && *at <= to).map(|(_, ms)| *ms).collect();
        l.sort_by(f64::total_cmp);
        let (p50, p99) = if l.is_empty() { (f64::NAN, f64::NAN) } else { (percentile(&l, 0.5), percentile(&l, 0.99)) };
        Window { rate: acked as f64 / (to - from).as_secs_f64(), p50, p99 }
    }
}

/// Tasks finished so far: acknowledged submits minus those still queued or running.
async fn finished(store: &Store, acks: &Acks) -> u64 {
    let acked = acks.count.load(Ordering::Relaxed);
    let (queued, running) = store.unfinished_task_count().await.expect("backlog");
    acked.saturating_sub(queued + running)
}

/// Pads the database at `db` to `mib` MiB with finished tasks.
fn pad(db: &Path, mib: u64, ws: &str, ctx: &str) {
    let c = rusqlite::Connection::open(db).expect("open for padding");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    let mut batch = 0u64;
    while std::fs::metadata(db).map(|m| m.len()).unwrap_or(0) < mib * 1024 * 1024 {
        c.execute(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 20000) \
             INSERT INTO tasks (id, workspace_id, context_id, kind, title, prompt, status, max_attempts, not_before, trace_id, \
                                created_at, updated_at, finished_at, result_summary) \
             SELECT printf('pad-%d-%d', ?1, n), ?2, ?3, 'noop', 'padding', hex(randomblob(1500)), 'succeeded', 3, 0, 'trace', 0, 0, 0, 'ok' FROM s",
            rusqlite::params![batch, ws, ctx],
        )
        .expect("pad");
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
        batch += 1;
    }
}

pub async fn bench(runs: usize) {
    let mib = env_usize("BENCH_BACKUP_MIB", 1024) as u64;
    let rate = env_usize("BENCH_BACKUP_RATE", 500) as u64;
    let base_secs = env_usize("BENCH_BACKUP_BASE_SECONDS", 10) as u64;
    let dir = tempfile::tempdir_in(std::env::var("BENCH_BACKUP_DIR").unwrap_or_else(|_| ".".into())).expect("tempdir");
    let db = dir.path().join("meta.sqlite");
    let store = Store::open(&db).expect("store");
    let ctx = store.ensure_context(&ChatRef::new("bench", "backup").expect("chat"), "bench", 0).await.expect("ctx");
    store.close();
    let t = Instant::now();
    let (ws_id, ctx_id) = (ctx.workspace_id.to_string(), ctx.id.to_string());
    let pad_db = db.clone();
    tokio::task::spawn_blocking(move || pad(&pad_db, mib, &ws_id, &ctx_id)).await.expect("pad");
    let size = std::fs::metadata(&db).expect("db").len();
    println!("padded the database to {:.0} MiB in {:.0} s", size as f64 / 1048576.0, t.elapsed().as_secs_f64());

    let store = Store::open(&db).expect("store");
    let (handle, _sup, pool) = noop_pool(&store, 5);

    let acks = Arc::new(Acks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (acks, stop, handle, ctx) = (acks.clone(), stop.clone(), handle.clone(), ctx.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(start + Duration::from_nanos(i * 1_000_000_000 / rate)).await;
                i += 1;
                let (acks, handle, task) = (acks.clone(), handle.clone(), noop_task(&ctx));
                tokio::spawn(async move {
                    let sent = Instant::now();
                    handle.submit(task).await.expect("submit");
                    let done = Instant::now();
                    acks.count.fetch_add(1, Ordering::Relaxed);
                    acks.latencies.lock().expect("latencies").push((done, (done - sent).as_secs_f64() * 1000.0));
                });
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let methods = [("backup-api", Method::paced()), ("vacuum-into", Method::VacuumInto)];
    let mut results: Vec<Vec<Row>> = vec![Vec::new(); methods.len()];
    for run in 0..runs {
        for (m, (name, method)) in methods.iter().enumerate() {
            let (t0, a0, f0) = (Instant::now(), acks.count.load(Ordering::Relaxed), finished(&store, &acks).await);
            tokio::time::sleep(Duration::from_secs(base_secs)).await;
            let (t1, a1, f1) = (Instant::now(), acks.count.load(Ordering::Relaxed), finished(&store, &acks).await);
            let base = acks.window(t0, t1, a1 - a0);
            let base_done = (f1 - f0) as f64 / (t1 - t0).as_secs_f64();

            let out = dir.path().join(format!("b-{run}-{name}.tar.gz"));
            let src = Sources { db: db.clone(), workspaces: dir.path().join("none"), pki: dir.path().join("none"), env_file: None };
            let opts = Options { method: method.clone(), ..Options::default() };
            let (t2, a2, f2) = (Instant::now(), acks.count.load(Ordering::Relaxed), finished(&store, &acks).await);
            let (o, s) = (out.clone(), src.clone());
            let manifest = tokio::task::spawn_blocking(move || backup::create(&s, &o, &opts)).await.expect("join").expect("backup");
            let (t3, a3, f3) = (Instant::now(), acks.count.load(Ordering::Relaxed), finished(&store, &acks).await);
            let during = acks.window(t2, t3, a3 - a2);
            let during_done = (f3 - f2) as f64 / (t3 - t2).as_secs_f64();
            let archive = std::fs::metadata(&out).expect("archive").len();
            let _ = std::fs::remove_file(&out);
            let (queued, running) = store.unfinished_task_count().await.expect("backlog");
            // The task rate is the lower of submits acknowledged and tasks
            // finished (a pool that falls behind shows up in the second).
            let (base_rate, during_rate) = (base.rate.min(base_done), during.rate.min(during_done));
            let ratio = during_rate / base_rate;
            println!(
                "run {run} {name}: {:.1} s (snapshot {:.1} s), archive {:.0} MiB; submitted/s {:.0} → {:.0}, finished/s {:.0} → {:.0} ({:.0}%); submit p50 {:.1} → {:.1} ms, p99 {:.1} → {:.1} ms; backlog after {}",
                (t3 - t2).as_secs_f64(),
                manifest.snapshot_ms as f64 / 1000.0,
                archive as f64 / 1048576.0,
                base.rate,
                during.rate,
                base_done,
                during_done,
                ratio * 100.0,
                base.p50,
                during.p50,
                base.p99,
                during.p99,
                queued + running
            );
            results[m].push(Row {
                secs: (t3 - t2).as_secs_f64(),
                snapshot: manifest.snapshot_ms as f64 / 1000.0,
                base: base_rate,
                during: during_rate,
                ratio,
                p99: during.p99,
                archive_mib: archive as f64 / 1048576.0,
            });
        }
    }
    stop.store(true, Ordering::Relaxed);
    producer.await.expect("producer");
    pool.drain(Duration::from_secs(5)).await;
    store.close();

    println!("| measure ({:.0} MiB database, {rate} tasks/s offered) | median | runs |\n|---|---|---|", size as f64 / 1048576.0);
    for (m, (name, _)) in methods.iter().enumerate() {
        let col = |f: fn(&Row) -> f64| median(results[m].iter().map(f).collect());
        let ratios: Vec<f64> = results[m].iter().map(|r| r.ratio * 100.0).collect();
        println!(
            "| {name}: backup time (snapshot) | {:.1} s ({:.1} s), archive {:.0} MiB | {runs} |",
            col(|r| r.secs),
            col(|r| r.snapshot),
            col(|r| r.archive_mib)
        );
        println!(
            "| {name}: task rate during / without backup | {:.0} / {:.0} tasks/s = {:.0}% (runs: {ratios:.0?}%; target ≥ 80%) | {runs} |",
            col(|r| r.during),
            col(|r| r.base),
            col(|r| r.ratio) * 100.0
        );
        println!("| {name}: submit p99 during backup | {:.1} ms | {runs} |", col(|r| r.p99));
    }
}
