//! `BENCH_ONLY=telegram` (also part of the full run): the Telegram
//! connector's targets, against the real release daemon polling the fake Bot
//! API (`tests/support/telegram.rs`, served by this harness on the same 2
//! cores). Every inbound message is a `/task` in a private chat; its one
//! reply ("Task queued") is the end of its path: `getUpdates` → inbox write
//! (with the offset) → dispatch → gateway → outbox → `sendMessage`. Task
//! outcome notices go to admin chats only (`AGENT_RUNTIME_TASK_NOTIFY_POLICY=admin`,
//! and there are none), so each message is answered exactly once.
//!
//! - throughput: `BENCH_TG_MESSAGES` (default 10,000) messages pushed as one
//!   burst over 200 chats; messages answered ÷ time from the first push to
//!   the last `sendMessage`. A fresh fake and daemon per run.
//! - latency: one message every 5 ms (200/s, an interval pacer) for
//!   `BENCH_SECONDS`, each in a chat of its own; latency = the fake's arrival
//!   of the reply's `sendMessage` − the push. Split at the `getUpdates` that
//!   acknowledged the message (the daemon asks for it only once it stored the
//!   batch): push → stored, stored → reply.
//! - memory: idle RSS once connected (3 s after the first long poll), and
//!   after `BENCH_TG_RSS_MESSAGES` (default 100,000) messages in bursts of
//!   `BENCH_TG_RSS_BURST` (default 5,000), each burst answered before the
//!   next, the daemon quiet again.
//!
//! `BENCH_RUNS` runs each (default 3 for this part; the memory run once).
//! Nothing is clamped: a missed target prints the measured numbers.

use super::telegram_fake::{Chat, FakeTelegram, User};
use super::{Daemon, SETTLE, cpu_secs, env_usize, median, memory_releases, percentile, quiesce, rss_kib, start_daemon, verdict};
use std::time::{Duration, Instant};

const TOKEN: &str = "123456:BENCH-telegram-token";
/// Distinct private chats the bursts are spread over.
const CHATS: i64 = 200;
/// First chat id of the throughput and memory runs.
const BURST_CHAT: i64 = 500_000;
/// First chat id of the latency run (one chat per message).
const LATENCY_CHAT: i64 = 1_000_000;

/// Targets from the issue.
const TARGET_RATE: f64 = 1_000.0;
const TARGET_IDLE_MB: f64 = 20.0;
const TARGET_GROWTH_MB: f64 = 5.0;

/// VmRSS, RssAnon, RssFile of `pid`, MiB.
fn rss(pid: u32) -> [f64; 3] {
    ["VmRSS:", "RssAnon:", "RssFile:"].map(|field| rss_kib(pid, field) as f64 / 1024.0)
}

/// A fresh fake and a daemon polling it, connected (its first long poll is
/// in) and idle for 3 s.
async fn start() -> (FakeTelegram, Daemon) {
    let fake = FakeTelegram::start(TOKEN).await;
    let env = [
        ("AGENT_RUNTIME_TELEGRAM_TOKEN", TOKEN),
        ("AGENT_RUNTIME_TELEGRAM_API_BASE", fake.base_url()),
        ("AGENT_RUNTIME_TELEGRAM_POLL_SECONDS", "5"),
        ("AGENT_RUNTIME_LLM_PROVIDER", "none"),
        ("AGENT_RUNTIME_TASK_NOTIFY_POLICY", "admin"),
        ("AGENT_RUNTIME_COMMAND_SYNC_ENABLED", "false"),
        // The measured workload is unchanged since issue 14: strangers' /task
        // commands, each queued (an open bot with no task rate limit).
        ("AGENT_RUNTIME_GATEWAY_GUEST_ROLE", "member"),
        ("AGENT_RUNTIME_TASK_RATE_LIMIT_PER_WINDOW", "0"),
    ];
    let (d, _) = start_daemon(&env).await;
    let t = Instant::now();
    while fake.calls("getUpdates") == 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "the daemon never polled the fake Telegram");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(SETTLE).await;
    (fake, d)
}

/// Pushes `/task bench <i>` for i in `range`, over the 200 burst chats; returns the last update id.
fn burst(fake: &FakeTelegram, range: std::ops::Range<usize>) -> i64 {
    let mut last = 0;
    for i in range {
        let id = BURST_CHAT + (i as i64 % CHATS);
        last = fake.push_message(Chat::private(id), User::new(id, "Bench"), &format!("/task bench {i}"));
    }
    last
}

/// Polls until the fake recorded `n` replies (true) or `timeout` passes
/// (false); `stored` is set when the daemon acknowledged update `last_id`.
async fn wait_replies(fake: &FakeTelegram, n: usize, last_id: i64, timeout: Duration, stored: &mut Option<Instant>) -> bool {
    let t = Instant::now();
    loop {
        if stored.is_none() && fake.confirmed_offset() > last_id {
            *stored = Some(Instant::now());
        }
        if fake.sent_count() >= n {
            return true;
        }
        if t.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One burst run.
struct Burst {
    idle_rss: [f64; 3],
    /// Replies ÷ (first push → the reply that completed the count).
    rate: f64,
    answered: usize,
    complete: bool,
    /// Time to push the burst, and until the daemon acknowledged (stored) all of it.
    push_s: f64,
    stored_s: f64,
    total_s: f64,
    /// Daemon CPU seconds per 1,000 messages: during the burst, and until it was quiet again.
    cpu_window: f64,
    cpu_all: f64,
    harness_cpu: f64,
    /// Replies that are not "Task queued", and replies beyond one per message (after quiescing).
    other_text: usize,
    extra: usize,
}

async fn burst_run(n: usize) -> Burst {
    let (fake, d) = start().await;
    let pid = d.child.id();
    let pid_s = pid.to_string();
    let idle_rss = rss(pid);
    let (cpu0, self0) = (cpu_secs(&pid_s), cpu_secs("self"));
    let t0 = Instant::now();
    let last_id = burst(&fake, 0..n);
    let push_s = t0.elapsed().as_secs_f64();
    let mut stored = None;
    let complete = wait_replies(&fake, n, last_id, Duration::from_secs(10) + Duration::from_millis(20) * n as u32, &mut stored).await;
    let total_s = t0.elapsed().as_secs_f64();
    let (cpu1, self1) = (cpu_secs(&pid_s), cpu_secs("self"));
    let cpu2 = quiesce(&pid_s).await;
    let sent = fake.sent();
    let answered = sent.len().min(n);
    let last_at = sent.get(answered.saturating_sub(1)).map_or(total_s, |s| s.at.duration_since(t0).as_secs_f64());
    let k = n as f64 / 1000.0;
    Burst {
        idle_rss,
        rate: answered as f64 / last_at,
        answered,
        complete,
        push_s,
        stored_s: stored.map_or(f64::NAN, |s| s.duration_since(t0).as_secs_f64()),
        total_s,
        cpu_window: (cpu1 - cpu0) / k,
        cpu_all: (cpu2 - cpu0) / k,
        harness_cpu: (self1 - self0) / k,
        other_text: sent.iter().filter(|s| !s.text.starts_with("Task queued")).count(),
        extra: sent.len().saturating_sub(n),
    }
}

/// One paced run.
struct Paced {
    idle_rss: [f64; 3],
    /// Push → reply, push → stored, stored → reply: (p50, p99, max) ms.
    total: [f64; 3],
    ingest: [f64; 3],
    process: [f64; 3],
    answered: usize,
    sent: usize,
    worst_slip_ms: f64,
}

fn spread(mut v: Vec<f64>) -> [f64; 3] {
    if v.is_empty() {
        return [f64::NAN; 3];
    }
    v.sort_by(f64::total_cmp);
    [percentile(&v, 0.50), percentile(&v, 0.99), v[v.len() - 1]]
}

async fn paced_run(seconds: u64) -> Paced {
    let (fake, d) = start().await;
    let idle_rss = rss(d.child.id());
    let total = (200 * seconds) as usize;
    let period = Duration::from_millis(5);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pushes = Vec::with_capacity(total);
    let mut slip = Duration::ZERO;
    for i in 0..total {
        let due = ticks.tick().await;
        slip = slip.max(tokio::time::Instant::now().saturating_duration_since(due));
        let id = LATENCY_CHAT + i as i64;
        let at = Instant::now();
        let update = fake.push_message(Chat::private(id), User::new(id, "Bench"), &format!("/task bench {i}"));
        pushes.push((id, update, at));
    }
    let last_id = pushes.last().map_or(0, |p| p.1);
    wait_replies(&fake, total, last_id, Duration::from_secs(60), &mut None).await;
    let sent = fake.sent();
    let mut reply_at = std::collections::HashMap::with_capacity(sent.len());
    for s in &sent {
        reply_at.entry(s.chat_id).or_insert(s.at);
    }
    // When each update was acknowledged: the earliest `getUpdates` with a higher offset.
    let mut acks: Vec<(i64, Instant)> =
        fake.get_updates_log().into_iter().filter_map(|(at, offset, status)| offset.filter(|_| status == 200).map(|o| (o, at))).collect();
    acks.sort_by_key(|(o, at)| (*o, *at));
    // The earliest ack at or above each offset: scan from the highest offset down.
    let mut earliest: Vec<(i64, Instant)> = Vec::with_capacity(acks.len());
    for (o, at) in acks.into_iter().rev() {
        let best = earliest.last().map_or(at, |(_, b)| (*b).min(at));
        earliest.push((o, best));
    }
    earliest.reverse();
    let stored_at = |update: i64| {
        let i = earliest.partition_point(|(o, _)| *o <= update);
        earliest.get(i).map(|(_, at)| *at)
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (mut all, mut ingest, mut process) = (Vec::new(), Vec::new(), Vec::new());
    for (chat, update, pushed) in &pushes {
        let Some(reply) = reply_at.get(chat) else { continue };
        all.push(ms(reply.saturating_duration_since(*pushed)));
        if let Some(stored) = stored_at(*update) {
            ingest.push(ms(stored.saturating_duration_since(*pushed)));
            process.push(ms(reply.saturating_duration_since(stored)));
        }
    }
    Paced {
        idle_rss,
        answered: all.len(),
        total: spread(all),
        ingest: spread(ingest),
        process: spread(process),
        sent: sent.len(),
        worst_slip_ms: ms(slip),
    }
}

/// The memory run.
struct Memory {
    idle: [f64; 3],
    /// (messages so far, VmRSS) after each burst.
    trend: Vec<(usize, f64)>,
    after: [f64; 3],
    answered: usize,
    total: usize,
    secs: f64,
    cpu_per_1000: f64,
    /// The database and its WAL at the end, MiB.
    db_mib: f64,
    /// Times the daemon gave memory back (its `/metrics`), at the end.
    releases: u64,
}

async fn memory_run(total: usize, burst_size: usize) -> Memory {
    let (fake, d) = start().await;
    let pid = d.child.id();
    let pid_s = pid.to_string();
    let idle = rss(pid);
    let cpu0 = cpu_secs(&pid_s);
    let t0 = Instant::now();
    let mut trend = Vec::new();
    let mut done = 0;
    while done < total {
        let n = burst_size.min(total - done);
        let last_id = burst(&fake, done..done + n);
        done += n;
        if !wait_replies(&fake, done, last_id, Duration::from_secs(120), &mut None).await {
            eprintln!("telegram memory run: burst ending at {done} not answered within 120 s ({} replies)", fake.sent_count());
            break;
        }
        trend.push((done, rss(pid)[0]));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = quiesce(&pid_s).await - cpu0;
    tokio::time::sleep(SETTLE).await;
    let after = rss(pid);
    // Only after the figure: a scrape reads the whole tasks and outbox tables
    // for its gauges, through the readers' file mapping (RSS "file").
    let releases = memory_releases(&d).await;
    let db = d._dir.path().join("data/agent-runtime/meta.sqlite");
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let db_mib = (size(db.clone()) + size(db.with_extension("sqlite-wal"))) as f64 / (1024.0 * 1024.0);
    Memory { idle, trend, after, answered: fake.sent_count(), total, secs, cpu_per_1000: cpu / (done as f64 / 1000.0), db_mib, releases }
}

/// The median of `f` over the runs, and every run's value.
fn col<T>(all: &[T], f: impl Fn(&T) -> f64) -> (f64, Vec<f64>) {
    let v: Vec<f64> = all.iter().map(f).collect();
    (median(v.clone()), v)
}

/// `BENCH_ONLY=telegram`.
pub async fn bench(seconds: u64) {
    let runs = env_usize("BENCH_RUNS", 3).max(1);
    let n = env_usize("BENCH_TG_MESSAGES", 10_000);
    let rss_total = env_usize("BENCH_TG_RSS_MESSAGES", 100_000);
    let rss_burst = env_usize("BENCH_TG_RSS_BURST", 5_000).max(1);

    let mut bursts = Vec::new();
    for _ in 0..runs {
        bursts.push(burst_run(n).await);
    }
    let (rate, rate_runs) = col(&bursts, |b| b.rate);
    let answered: Vec<String> = bursts.iter().map(|b| format!("{}{}", b.answered, if b.complete { "" } else { " (timed out)" })).collect();
    let answered = answered.join(", ");
    println!(
        "| telegram: {n} `/task` messages pushed at once over {CHATS} private chats, answered end to end (fake Bot API → getUpdates → store → gateway → outbox → sendMessage) | {rate:.0} messages/s (runs: {rate_runs:.0?}); answered per run: {answered} | {runs} |"
    );
    let (push, _) = col(&bursts, |b| b.push_s);
    let (stored, stored_runs) = col(&bursts, |b| b.stored_s);
    let (total, total_runs) = col(&bursts, |b| b.total_s);
    println!(
        "| telegram burst phases from the first push: all pushed / all stored (acknowledged) / all answered | {push:.2} / {stored:.2} / {total:.2} s (stored runs: {stored_runs:.2?}; answered runs: {total_runs:.2?}) | {runs} |"
    );
    let (cw, cw_runs) = col(&bursts, |b| b.cpu_window);
    let (ca, ca_runs) = col(&bursts, |b| b.cpu_all);
    let (hc, _) = col(&bursts, |b| b.harness_cpu);
    let other: usize = bursts.iter().map(|b| b.other_text + b.extra).sum();
    println!(
        "| telegram daemon CPU per 1,000 messages: until all answered / until the daemon is quiet again (tasks run) | {cw:.2} / {ca:.2} s (runs: {cw_runs:.2?} / {ca_runs:.2?}); harness with the fake {hc:.2} s; replies other than one \"Task queued\" per message: {other} | {runs} |"
    );
    println!("| target: ≥ {TARGET_RATE:.0} messages/s | {} ({rate:.0}/s) | {runs} |", verdict(rate >= TARGET_RATE));

    let mut paced = Vec::new();
    for _ in 0..runs {
        paced.push(paced_run(seconds).await);
    }
    let q = |i: usize, f: fn(&Paced) -> [f64; 3]| col(&paced, move |p| f(p)[i]);
    let ((p50, _), (p99, p99_runs), (max, max_runs)) = (q(0, |p| p.total), q(1, |p| p.total), q(2, |p| p.total));
    let counts: Vec<String> = paced.iter().map(|p| format!("{} of {} ({} sent)", p.answered, 200 * seconds, p.sent)).collect();
    let counts = counts.join(", ");
    let (slip, _) = col(&paced, |p| p.worst_slip_ms);
    println!(
        "| telegram: one `/task` every 5 ms (200/s) for {seconds} s, each in its own chat: push → reply `sendMessage` p50 / p99 / max | {p50:.1} / {p99:.1} / {max:.1} ms (p99 runs: {p99_runs:.1?}; max runs: {max_runs:.1?}); answered: {counts}; worst pacer slip {slip:.1} ms | {runs} |"
    );
    let ((i50, _), (i99, _), (imax, _)) = (q(0, |p| p.ingest), q(1, |p| p.ingest), q(2, |p| p.ingest));
    let ((r50, _), (r99, _), (rmax, _)) = (q(0, |p| p.process), q(1, |p| p.process), q(2, |p| p.process));
    println!(
        "| telegram latency split at the acknowledging getUpdates: push → stored / stored → reply, p50 / p99 / max | {i50:.1} / {i99:.1} / {imax:.1} ms; {r50:.1} / {r99:.1} / {rmax:.1} ms | {runs} |"
    );

    let mut idle: Vec<[f64; 3]> = bursts.iter().map(|b| b.idle_rss).chain(paced.iter().map(|p| p.idle_rss)).collect();
    let m = memory_run(rss_total, rss_burst).await;
    idle.push(m.idle);
    let (idle_rss, idle_runs) = col(&idle, |r| r[0]);
    let (idle_anon, _) = col(&idle, |r| r[1]);
    let (idle_file, _) = col(&idle, |r| r[2]);
    println!(
        "| telegram: daemon idle RSS, connected (long polls answered by the fake), 3 s after its first poll | {idle_rss:.1} MiB (anon {idle_anon:.1}, file {idle_file:.1}; per daemon: {idle_runs:.1?}) | {} |",
        idle.len()
    );
    let growth = m.after[0] - m.idle[0];
    let trend: Vec<String> = m
        .trend
        .iter()
        .enumerate()
        .filter(|(i, (k, _))| m.trend.len() <= 10 || *i == 0 || k % (m.total / 5).max(1) < rss_burst || *k == m.total)
        .map(|(_, p)| p)
        .map(|(k, r)| format!("{k}: {r:.1}"))
        .collect();
    println!(
        "| telegram: daemon RSS after {} messages (bursts of {rss_burst}, each answered; quiet again + 3 s; memory releases {}) | {:.1} MiB (anon {:.1}, file {:.1}) from {:.1} (anon {:.1}, file {:.1}): growth {growth:.1} MiB (anon {:+.1}, file {:+.1}); VmRSS by messages: {}; {} answered in {:.0} s, daemon CPU {:.2} s per 1,000; database + WAL {:.0} MiB | 1 |",
        m.total,
        m.releases,
        m.after[0],
        m.after[1],
        m.after[2],
        m.idle[0],
        m.idle[1],
        m.idle[2],
        m.after[1] - m.idle[1],
        m.after[2] - m.idle[2],
        trend.join(", "),
        m.answered,
        m.secs,
        m.cpu_per_1000,
        m.db_mib
    );
    println!(
        "| targets: idle ≤ {TARGET_IDLE_MB:.0} MB (Telegram only); growth ≤ {TARGET_GROWTH_MB:.0} MB after {} messages | {} ({idle_rss:.1} MiB); {} ({growth:.1} MiB) | 1 |",
        m.total,
        verdict(idle_rss <= TARGET_IDLE_MB),
        verdict(growth <= TARGET_GROWTH_MB)
    );
}
