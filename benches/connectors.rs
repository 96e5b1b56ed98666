//! `BENCH_ONLY=connectors` (also part of the full run): the memory of the
//! release `serve` with Telegram, Discord and IMAP (plus SMTP for answers)
//! all connected to their local peers: the fake Bot API and the fake Discord
//! (REST + gateway) served by this harness, and a real Dovecot and aiosmtpd
//! started per daemon (`tests/support/`). Only the daemon's RSS is counted.
//!
//! - idle: RSS (total, anon, file) once every configured connector reports
//!   `healthy` on `/api/v1/heartbeat`, the daemon is quiet (under 2% of a
//!   core over 500 ms) and 3 s more have passed. Three setups, interleaved, a
//!   fresh daemon each, `BENCH_RUNS` (default 3) of each: no connectors,
//!   Telegram only, all three.
//! - growth: `BENCH_CONN_MEMORY_RUNS` (default 3) fresh daemons with all
//!   three, one after another (the target is judged on the median), each given `BENCH_CONN_MESSAGES` (default
//!   100,000) messages in rounds of `BENCH_CONN_ROUND` (default 5,000), each
//!   round answered before the next: `BENCH_CONN_DISCORD_PERCENT` (default 10)
//!   of them `/help` to Discord over 10 guild channels, `BENCH_CONN_MAILS`
//!   (default 300) `/task` mails from a linked sender with a DMARC pass (so
//!   each is answered over SMTP), the rest `/task` to Telegram over 200
//!   private chats (as `telegram.rs`' memory run). RSS after quiescing + 3 s
//!   (the daemon gives memory back after 2 s without store changes) against
//!   the same daemon's idle RSS (taken after the sender was linked).
//!
//! `BENCH_CONN_SMAPS=<file>` keeps the daemon's `/proc/<pid>/smaps` when idle
//! (`<file>.idle`) and after the run (`<file>`), for finding where growth sits.
//!
//! Task outcome notices go to admin chats only, and there are none, so each
//! message is answered exactly once. Nothing is clamped: a missed target
//! prints the measured numbers.

use super::discord_fake::{Author, FakeDiscord};
use super::mail_peers::{Dovecot, SmtpSink};
use super::telegram_fake::{Chat, FakeTelegram, User};
use super::{Daemon, SETTLE, cpu_secs, env_usize, median, memory_releases, quiesce, rss_kib, start_daemon, verdict};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TG_TOKEN: &str = "123456:BENCH-telegram-token";
const DC_TOKEN: &str = "MTAwMDAw.BENCH-discord-token";
const GUILD: &str = "300000000000000001";
/// The runtime's mailbox, the linked sender, and the authserv-id trusted in `Authentication-Results`.
const AGENT: &str = "agent@example.test";
const SENDER: &str = "alice@example.test";
const MX: &str = "mx.example.test";
/// Telegram private chats and Discord channels the messages are spread over.
const TG_CHATS: i64 = 200;
const TG_CHAT: i64 = 500_000;
const DC_CHANNELS: usize = 10;

const TARGET_IDLE_MB: f64 = 20.0;
const TARGET_GROWTH_MB: f64 = 5.0;

/// Which connectors a daemon runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setup {
    Bare,
    Telegram,
    All,
}

/// The peers of one daemon; dropped (Dovecot and aiosmtpd stopped) with it.
struct Peers {
    tg: Option<FakeTelegram>,
    dc: Option<FakeDiscord>,
    mail: Option<(Dovecot, SmtpSink, tempfile::TempDir)>,
}

/// VmRSS, RssAnon, RssFile (MiB) and threads of `pid`.
fn rss(pid: u32) -> [f64; 4] {
    let mib = |f| rss_kib(pid, f) as f64 / 1024.0;
    [mib("VmRSS:"), mib("RssAnon:"), mib("RssFile:"), rss_kib(pid, "Threads:") as f64]
}

async fn start_peers(setup: Setup) -> Peers {
    let tg = if setup == Setup::Bare { None } else { Some(FakeTelegram::start(TG_TOKEN).await) };
    if setup != Setup::All {
        return Peers { tg, dc: None, mail: None };
    }
    let dc = FakeDiscord::start(DC_TOKEN).await;
    let (imap, smtp) = (Dovecot::start().await, SmtpSink::start().await);
    let dir = tempfile::tempdir().expect("tempdir");
    Peers { tg, dc: Some(dc), mail: Some((imap, smtp, dir)) }
}

/// The daemon's environment for these peers (as `tests/e2e/{telegram,discord,email}.rs` set it).
fn env(p: &Peers) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AGENT_RUNTIME_LLM_PROVIDER", "none".to_string()),
        ("AGENT_RUNTIME_TASK_NOTIFY_POLICY", "admin".into()),
        ("AGENT_RUNTIME_COMMAND_SYNC_ENABLED", "false".into()),
        // Unchanged workload since issue 14: strangers' commands, each answered.
        ("AGENT_RUNTIME_GATEWAY_GUEST_ROLE", "member".into()),
        ("AGENT_RUNTIME_TASK_RATE_LIMIT_PER_WINDOW", "0".into()),
    ];
    if let Some(tg) = &p.tg {
        env.extend([
            ("AGENT_RUNTIME_TELEGRAM_TOKEN", TG_TOKEN.to_string()),
            ("AGENT_RUNTIME_TELEGRAM_API_BASE", tg.base_url().to_string()),
            ("AGENT_RUNTIME_TELEGRAM_POLL_SECONDS", "5".into()),
        ]);
    }
    if let Some(dc) = &p.dc {
        env.extend([
            ("AGENT_RUNTIME_DISCORD_TOKEN", DC_TOKEN.to_string()),
            ("AGENT_RUNTIME_DISCORD_API_BASE", format!("{}/api/v10", dc.base_url())),
            ("AGENT_RUNTIME_DISCORD_GATEWAY_URL", dc.gateway_url()),
        ]);
    }
    if let Some((imap, smtp, dir)) = &p.mail {
        // Both test CAs in one file, as an operator with a private CA would have.
        let cas = dir.path().join("cas.pem");
        std::fs::write(&cas, format!("{}\n{}", imap.ca_pem(), smtp.ca_pem())).expect("write CAs");
        env.extend([
            ("AGENT_RUNTIME_EMAIL_ENABLED", "true".to_string()),
            ("AGENT_RUNTIME_IMAP_HOST", "127.0.0.1".into()),
            ("AGENT_RUNTIME_IMAP_PORT", imap.port().to_string()),
            ("AGENT_RUNTIME_IMAP_TLS", "starttls".into()),
            ("AGENT_RUNTIME_IMAP_USERNAME", AGENT.into()),
            ("AGENT_RUNTIME_IMAP_PASSWORD", imap.password().into()),
            ("AGENT_RUNTIME_IMAP_POLL_SECONDS", "60".into()),
            ("AGENT_RUNTIME_EMAIL_AUTHSERV_ID", MX.into()),
            ("AGENT_RUNTIME_EMAIL_CA_FILE", cas.display().to_string()),
            ("AGENT_RUNTIME_SMTP_HOST", "127.0.0.1".into()),
            ("AGENT_RUNTIME_SMTP_PORT", smtp.port().to_string()),
            ("AGENT_RUNTIME_SMTP_TLS", "starttls".into()),
            ("AGENT_RUNTIME_SMTP_FROM", AGENT.into()),
        ]);
    }
    env
}

/// Waits until every connector of `p` is `healthy` on `/api/v1/heartbeat`.
async fn wait_healthy(d: &Daemon, p: &Peers) {
    let mut names = Vec::new();
    names.extend(p.tg.as_ref().map(|_| "telegram"));
    names.extend(p.dc.as_ref().map(|_| "discord"));
    names.extend(p.mail.as_ref().map(|_| "email"));
    let t = Instant::now();
    loop {
        let hb: Value = match d.http.get(format!("{}/api/v1/heartbeat", d.base)).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        let healthy = |n: &str| hb["components"].as_array().is_some_and(|c| c.iter().any(|c| c["name"] == n && c["state"] == "healthy"));
        if names.iter().all(|n| healthy(n)) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "connectors {names:?} not all healthy within 30 s: {hb}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Peers and a daemon connected to them, healthy, quiet and idle for 3 s more
/// (so a release of memory after the start-up writes is behind it, as it is
/// behind the figure after the messages).
async fn start(setup: Setup, link_sender: bool) -> (Peers, Daemon) {
    let peers = start_peers(setup).await;
    let env = env(&peers);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (d, _) = start_daemon(&env).await;
    if link_sender {
        link(&d, SENDER).await;
    }
    wait_healthy(&d, &peers).await;
    quiesce(&d.child.id().to_string()).await;
    tokio::time::sleep(SETTLE).await;
    (peers, d)
}

/// Links `address` on the email connector as a member (pairing started and approved over the admin API).
async fn link(d: &Daemon, address: &str) {
    let post = |path: &str, body: Value| d.http.post(format!("{}{path}", d.base)).json(&body).send();
    let r = post("/api/v1/pairings/start", json!({"connector": "email", "connector_user_id": address})).await.expect("pairing start");
    assert_eq!(r.status(), 201, "pairing start");
    let v: Value = r.json().await.expect("pairing json");
    let token = v["token"].as_str().expect("pairing token").to_string();
    let r = post("/api/v1/pairings/approve", json!({"token": token, "role": "member"})).await.expect("pairing approve");
    assert_eq!(r.status(), 200, "pairing approve");
}

/// A `/task` mail from the linked sender, authenticated by DMARC at `MX`.
fn mail(i: usize) -> Vec<u8> {
    format!(
        "Authentication-Results: {MX}; dmarc=pass (p=reject) header.from=example.test; spf=pass smtp.mailfrom=example.test\r\n\
         From: Alice <{SENDER}>\r\nTo: {AGENT}\r\nSubject: /task bench mail {i}\r\nMessage-ID: <bench-{i}@example.test>\r\n\
         Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthanks\r\n"
    )
    .into_bytes()
}

/// SMTP answers so far (messages in a thread: with `In-Reply-To`), and how many say "Task queued".
fn mail_answers(smtp: &SmtpSink) -> (usize, usize) {
    let raw: Vec<String> = smtp.captured().into_iter().map(|c| String::from_utf8_lossy(&c.raw).into_owned()).collect();
    let answers: Vec<&String> = raw.iter().filter(|r| r.contains("In-Reply-To:")).collect();
    (answers.len(), answers.iter().filter(|r| r.contains("Task queued")).count())
}

/// Messages sent so far per connector, one round's worth.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    tg: usize,
    dc: usize,
    mail: usize,
}

/// Pushes one round: Telegram `/task`s, Discord `/help`s, then mails (appended one by one while the daemon works).
async fn push_round(p: &Peers, from: Counts, to: Counts) {
    let (tg, dc, (imap, _, _)) = (p.tg.as_ref().expect("telegram"), p.dc.as_ref().expect("discord"), p.mail.as_ref().expect("mail"));
    for i in from.tg..to.tg {
        let id = TG_CHAT + (i as i64 % TG_CHATS);
        tg.push_message(Chat::private(id), User::new(id, "Bench"), &format!("/task bench {i}"));
    }
    for i in from.dc..to.dc {
        let channel = format!("{}", 700_000_000_000_000_000u64 + (i % DC_CHANNELS) as u64);
        let user = format!("{}", 100_000_000_000_000_000u64 + (i % 50) as u64);
        dc.push_message(&channel, Some(GUILD), Author::user(&user, "bench"), "/help");
    }
    for i in from.mail..to.mail {
        imap.append(AGENT, &mail(i)).await;
    }
}

/// Waits until every connector answered `want` (true), or `timeout` passes (false).
async fn wait_answers(p: &Peers, want: Counts, timeout: Duration) -> bool {
    let (tg, dc, (_, smtp, _)) = (p.tg.as_ref().expect("telegram"), p.dc.as_ref().expect("discord"), p.mail.as_ref().expect("mail"));
    let t = Instant::now();
    while t.elapsed() < timeout {
        // Reading the sink's files is dear: only once the chat connectors are done.
        if tg.sent_count() >= want.tg && dc.calls("create_message") >= want.dc && mail_answers(smtp).0 >= want.mail {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(if tg.sent_count() >= want.tg { 100 } else { 5 })).await;
    }
    false
}

/// The memory run.
struct Memory {
    idle: [f64; 4],
    after: [f64; 4],
    /// (messages so far, VmRSS MiB) after each round.
    trend: Vec<(usize, f64)>,
    pushed: Counts,
    answered: Counts,
    /// Answers of the expected shape: "Task queued" (Telegram, email), "Commands:" (Discord).
    expected: Counts,
    secs: f64,
    cpu_per_1000: f64,
    db_mib: f64,
    /// Times the daemon gave memory back (its `/metrics`), at the end.
    releases: u64,
}

async fn memory_run(total: usize, round: usize, dc_percent: usize, mails: usize) -> Memory {
    let (p, d) = start(Setup::All, true).await;
    let pid = d.child.id();
    let pid_s = pid.to_string();
    let idle = rss(pid);
    if let Ok(path) = std::env::var("BENCH_CONN_SMAPS") {
        let _ = std::fs::copy(format!("/proc/{pid}/smaps"), format!("{path}.idle"));
    }
    let cpu0 = cpu_secs(&pid_s);
    let t0 = Instant::now();
    let (mut trend, mut done, mut sent) = (Vec::new(), 0, Counts::default());
    while done < total {
        done += round.min(total - done);
        let (dc, mail) = (done * dc_percent / 100, done * mails.min(total) / total);
        let want = Counts { tg: done - dc - mail, dc, mail };
        push_round(&p, sent, want).await;
        sent = want;
        if !wait_answers(&p, want, Duration::from_secs(120)).await {
            eprintln!("connectors memory run: round ending at {done} not answered within 120 s (wanted {want:?})");
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
    if let Ok(path) = std::env::var("BENCH_CONN_SMAPS") {
        // Diagnosis: where the growth sits (per mapping), for docs/benchmarks.md.
        let _ = std::fs::copy(format!("/proc/{pid}/smaps"), &path);
        let _ = std::fs::copy(format!("/proc/{pid}/status"), format!("{path}.status"));
    }
    let db = d._dir.path().join("data/agent-runtime/meta.sqlite");
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let db_mib = (size(db.clone()) + size(db.with_extension("sqlite-wal"))) as f64 / (1024.0 * 1024.0);
    let (tg, dc, (_, smtp, _)) = (p.tg.as_ref().expect("telegram"), p.dc.as_ref().expect("discord"), p.mail.as_ref().expect("mail"));
    let (tg_sent, dc_sent, (mail_sent, mail_ok)) = (tg.sent(), dc.sent(), mail_answers(smtp));
    let answered = Counts { tg: tg_sent.len(), dc: dc_sent.len(), mail: mail_sent };
    let expected = Counts {
        tg: tg_sent.iter().filter(|s| s.text.starts_with("Task queued")).count(),
        dc: dc_sent.iter().filter(|s| s.content.starts_with("Commands:")).count(),
        mail: mail_ok,
    };
    let cpu_per_1000 = cpu / ((sent.tg + sent.dc + sent.mail).max(1) as f64 / 1000.0);
    Memory { idle, after, trend, pushed: sent, answered, expected, secs, cpu_per_1000, db_mib, releases }
}

/// Median and range of one field over the daemons.
fn stat(v: &[[f64; 4]], i: usize) -> (f64, f64, f64) {
    let col: Vec<f64> = v.iter().map(|r| r[i]).collect();
    (median(col.clone()), col.iter().copied().fold(f64::MAX, f64::min), col.iter().copied().fold(f64::MIN, f64::max))
}

fn idle_row(label: &str, v: &[[f64; 4]]) -> f64 {
    let ((t, lo, hi), (a, _, _), (f, _, _), (th, _, _)) = (stat(v, 0), stat(v, 1), stat(v, 2), stat(v, 3));
    println!(
        "| connectors: idle RSS of serve, {label} | {t:.1} MiB ({lo:.1}–{hi:.1}; anon {a:.1}, file {f:.1}; {th:.0} threads) | {} |",
        v.len()
    );
    t
}

/// The rows of one memory run.
fn memory_rows(m: &Memory, run: usize, total: usize, round: usize) {
    let growth = m.after[0] - m.idle[0];
    let step = (m.trend.len() / 5).max(1);
    let trend: Vec<String> = m
        .trend
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == m.trend.len())
        .map(|(_, (k, r))| format!("{k}: {r:.1}"))
        .collect();
    println!(
        "| connectors: daemon RSS after {total} messages (run {run}), all three connected (rounds of {round}, each answered; quiet again + 3 s; memory releases {}) | {:.1} MiB (anon {:.1}, file {:.1}; {:.0} threads) from {:.1} (anon {:.1}, file {:.1}; {:.0} threads): growth {growth:+.1} MiB (anon {:+.1}, file {:+.1}); VmRSS by messages: {}; {:.0} s, daemon CPU {:.2} s per 1,000; database + WAL {:.0} MiB | 1 |",
        m.releases,
        m.after[0],
        m.after[1],
        m.after[2],
        m.after[3],
        m.idle[0],
        m.idle[1],
        m.idle[2],
        m.idle[3],
        m.after[1] - m.idle[1],
        m.after[2] - m.idle[2],
        trend.join(", "),
        m.secs,
        m.cpu_per_1000,
        m.db_mib
    );
    let (p, a, e) = (m.pushed, m.answered, m.expected);
    println!(
        "| connectors: answered of pushed (of the expected shape): Telegram `/task` / Discord `/help` over {DC_CHANNELS} guild channels / email `/task` from a linked sender (IMAP IDLE → SMTP), run {run} | {} of {} ({}) / {} of {} ({}) / {} of {} ({}) | 1 |",
        a.tg, p.tg, e.tg, a.dc, p.dc, e.dc, a.mail, p.mail, e.mail
    );
}

/// `BENCH_ONLY=connectors`.
pub async fn bench() {
    let runs = env_usize("BENCH_RUNS", 3).max(1);
    let total = env_usize("BENCH_CONN_MESSAGES", 100_000).max(1);
    let round = env_usize("BENCH_CONN_ROUND", 5_000).max(1);
    let dc_percent = env_usize("BENCH_CONN_DISCORD_PERCENT", 10).min(100);
    let mails = env_usize("BENCH_CONN_MAILS", 300);

    let mut idle: [Vec<[f64; 4]>; 3] = Default::default();
    for _ in 0..runs {
        for (i, setup) in [Setup::Bare, Setup::Telegram, Setup::All].into_iter().enumerate() {
            let (_peers, d) = start(setup, false).await;
            idle[i].push(rss(d.child.id()));
        }
    }
    let bare = idle_row("no connectors (3 s after /readyz and quiet)", &idle[0]);
    let tg = idle_row("Telegram only (healthy on /api/v1/heartbeat, quiet, + 3 s)", &idle[1]);
    let all = idle_row("Telegram, Discord and IMAP (+ SMTP) all healthy on /api/v1/heartbeat, quiet, + 3 s", &idle[2]);
    let d = |i: usize, a: usize, b: usize| stat(&idle[a], i).0 - stat(&idle[b], i).0;
    println!(
        "| connectors: idle cost by medians: Telegram / Discord + IMAP + SMTP on top | {:+.1} MiB (anon {:+.1}, file {:+.1}) / {:+.1} MiB (anon {:+.1}, file {:+.1}) | {runs} |",
        d(0, 1, 0),
        d(1, 1, 0),
        d(2, 1, 0),
        d(0, 2, 1),
        d(1, 2, 1),
        d(2, 2, 1)
    );

    let memory_runs = env_usize("BENCH_CONN_MEMORY_RUNS", 3).max(1);
    let mut growths = Vec::new();
    for run in 1..=memory_runs {
        let m = memory_run(total, round, dc_percent, mails).await;
        growths.push(m.after[0] - m.idle[0]);
        memory_rows(&m, run, total, round);
    }
    let growth = median(growths.clone());
    let (lo, hi) = (growths.iter().copied().fold(f64::MAX, f64::min), growths.iter().copied().fold(f64::MIN, f64::max));
    println!(
        "| targets: idle ≤ {TARGET_IDLE_MB:.0} MB with all three connected; growth ≤ {TARGET_GROWTH_MB:.0} MB after {total} messages | {} ({all:.1} MiB = {:.1} MB; Telegram only {tg:.1}, none {bare:.1} MiB); {} ({growth:+.1} MiB = {:+.1} MB; runs {lo:+.1} to {hi:+.1}) | {runs}; {memory_runs} |",
        verdict(all * 1.048_576 <= TARGET_IDLE_MB),
        all * 1.048_576,
        verdict(growth * 1.048_576 <= TARGET_GROWTH_MB),
        growth * 1.048_576
    );
}
