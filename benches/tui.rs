//! `BENCH_ONLY=tui`: the admin console's numbers, on the release binary
//! against a real daemon over mutual TLS (the console finds it through
//! `AGENT_RUNTIME_DATA_DIR` and `AGENT_RUNTIME_ADMIN_API_URL`, with an
//! otherwise empty environment). Each run (`BENCH_RUNS`, at most 3) has:
//! - on a fresh daemon: `tui --dump overview --size 100x30`, spawn to exit,
//!   `BENCH_TUI_DUMPS` (20) times after 2 warm-ups, p50 and p90; again once
//!   the daemon holds `BENCH_TUI_TASKS` (10,000) succeeded `noop` tasks;
//! - on that daemon, the interactive console under tmux (120x40) on the
//!   tasks view: `G` (last row, which fetches the next page of 200) until
//!   its title says every task is loaded; its RSS then, and the time from
//!   start to the whole list;
//! - on a second fresh daemon, the console on the activity view with
//!   `AGENT_RUNTIME_TUI_STATS`, while `noop` tasks are paced open loop at
//!   `BENCH_TUI_RATE` (200) per second for `BENCH_TUI_SECONDS` (10): the
//!   event log's actual growth, the console's CPU over that window, its RSS
//!   at the end, and the frame draw times it wrote on exit (every frame of
//!   its life, start and load).
//!
//! Nothing is clamped: a missed target prints the measured numbers.

use super::{Daemon, bin, cpu_secs, env_usize, median, percentile, rss_kib, start_daemon, verdict};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The terminal the interactive runs get.
const SIZE: (&str, &str) = ("120", "40");

fn mib(pid: u32, field: &str) -> f64 {
    rss_kib(pid, field) as f64 / 1024.0
}

/// The console's environment: the daemon's data dir and URL, `PATH`, nothing else.
fn tui_env(d: &Daemon) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("AGENT_RUNTIME_DATA_DIR".into(), d._dir.path().join("data").display().to_string()),
        ("AGENT_RUNTIME_ADMIN_API_URL".into(), d.base.clone()),
    ]
}

/// One `tui --dump overview --size 100x30`, spawn to exit, in ms.
fn dump_once(d: &Daemon) -> f64 {
    let t = Instant::now();
    let out = Command::new(bin())
        .env_clear()
        .envs(tui_env(d))
        .args(["tui", "--dump", "overview", "--size", "100x30"])
        .stdin(Stdio::null())
        .output()
        .expect("spawn tui --dump");
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tui --dump overview exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().count(), 30, "tui --dump overview --size 100x30 did not print 30 lines:\n{text}");
    ms
}

/// (p50, p90, min, max) ms of `reps` dumps after 2 warm-ups.
fn dumps(d: &Daemon, reps: usize) -> (f64, f64, f64, f64) {
    dump_once(d);
    dump_once(d);
    let mut v: Vec<f64> = (0..reps.max(1)).map(|_| dump_once(d)).collect();
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.9), v[0], v[v.len() - 1])
}

/// `agent_runtime_tasks{status="succeeded"}` from `/metrics`.
async fn succeeded(d: &Daemon) -> Option<usize> {
    let text = d.http.get(format!("{}/metrics", d.base)).send().await.ok()?.text().await.ok()?;
    let key = "agent_runtime_tasks{status=\"succeeded\"} ";
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse::<f64>().ok()).map(|v| v as usize)
}

/// The event log's head (`GET /api/v1/events/log?limit=1`).
async fn head(d: &Daemon) -> i64 {
    let v: Value =
        d.http.get(format!("{}/api/v1/events/log?limit=1", d.base)).send().await.expect("events log").json().await.expect("json");
    v["head"].as_i64().expect("head")
}

/// `POST /api/v1/tasks` (`noop`) from `clients` callers sharing one pacer:
/// request i is due at start + i / rate (`rate` 0: as fast as they go).
/// Returns (accepted, errors, seconds to the last answer).
async fn submit(d: &Daemon, total: usize, rate: usize, clients: usize) -> (usize, usize, f64) {
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1) as u64);
    let (url, next) = (format!("{}/api/v1/tasks", d.base), Arc::new(AtomicUsize::new(0)));
    let start = tokio::time::Instant::now();
    let mut joins = Vec::new();
    for _ in 0..clients {
        let (http, url, next) = (d.http.clone(), url.clone(), next.clone());
        joins.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return (ok, errors);
                }
                if rate > 0 {
                    tokio::time::sleep_until(start + interval * i as u32).await;
                }
                let r = http.post(&url).header("content-type", "application/json").body(r#"{"prompt":"p","kind":"noop"}"#).send().await;
                let accepted = match r {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                (ok, errors) = if accepted { (ok + 1, errors) } else { (ok, errors + 1) };
            }
        }));
    }
    let (mut ok, mut errors) = (0, 0);
    for j in joins {
        let (o, e) = j.await.expect("submitter");
        (ok, errors) = (ok + o, errors + e);
    }
    (ok, errors, start.elapsed().as_secs_f64())
}

/// The console running under its own tmux server (killed on drop), whose
/// socket is in the daemon's temporary dir (removed with it).
struct Tmux {
    socket: std::path::PathBuf,
    pid: u32,
}

impl Tmux {
    /// Starts `tui --view <view>` in a detached 120x40 session, the binary
    /// itself as the pane's process (`env -i` execs it: no shell between).
    fn start(d: &Daemon, view: &str, extra: &[(&str, String)]) -> Tmux {
        let socket = d._dir.path().join(format!("tmux-{view}"));
        let mut args: Vec<String> =
            ["new-session", "-d", "-s", "tui", "-x", SIZE.0, "-y", SIZE.1, "env", "-i", "TERM=tmux-256color"].map(String::from).into();
        args.extend(
            tui_env(d).into_iter().chain(extra.iter().map(|(k, v)| ((*k).to_string(), v.clone()))).map(|(k, v)| format!("{k}={v}")),
        );
        args.extend([bin().to_string(), "tui".into(), "--view".into(), view.into()]);
        let mut tm = Tmux { socket, pid: 0 };
        let out = tm.run(&args);
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        let started = Instant::now();
        loop {
            let out = tm.run(&["list-panes", "-t", "tui", "-F", "#{pane_pid}"]);
            let pid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if pid != 0 && comm.trim() == "agent-runtime" {
                tm.pid = pid;
                return tm;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "the console did not start under tmux (pane pid {pid}, {comm:?})");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        Command::new("tmux")
            .args(["-u", "-f", "/dev/null", "-S"])
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    /// The screen as text.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "tui"]).stdout).into_owned()
    }

    fn key(&self, key: &str) {
        self.run(&["send-keys", "-t", "tui", key]);
    }

    /// Polls the screen until `done` holds; panics with the screen after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
        let started = Instant::now();
        loop {
            let s = self.screen();
            if done(&s) {
                return;
            }
            assert!(started.elapsed() < limit, "the console did not show {what} within {limit:?}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `q`, then waits for the process to end.
    fn quit(&self) {
        self.key("q");
        let started = Instant::now();
        while std::path::Path::new(&format!("/proc/{}", self.pid)).exists() {
            assert!(started.elapsed() < Duration::from_secs(10), "the console did not exit on q; screen:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// From the tasks title (` Tasks: all · 200 loaded, more below `): the
/// count loaded and whether more are below.
fn tasks_title(screen: &str) -> (usize, bool) {
    let Some(line) = screen.lines().find(|l| l.contains("Tasks:") && l.contains(" loaded")) else { return (0, true) };
    let before = line.split(" loaded").next().unwrap_or_default();
    let n = before.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (n, line.contains("more below"))
}

struct Run {
    dump_empty: (f64, f64, f64, f64),
    dump_full: (f64, f64, f64, f64),
    create_per_s: f64,
    list_s: f64,
    list_rss: f64,
    list_first: f64,
    list_settled: f64,
    list_peak: f64,
    live: Live,
}

struct Live {
    events_per_s: f64,
    tasks_per_s: f64,
    errors: usize,
    cpu_pct: f64,
    rss: f64,
    frames: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

/// The activity view while `rate` tasks/s arrive for `seconds`, on a fresh daemon.
async fn live(seconds: usize, rate: usize) -> Live {
    let (d, _) = start_daemon(&[]).await;
    let stats = d._dir.path().join("tui-stats.json");
    let tm = Tmux::start(&d, "activity", &[("AGENT_RUNTIME_TUI_STATS", stats.display().to_string())]);
    tm.wait_for("● live", Duration::from_secs(20), |s| s.contains("● live"));
    let pid = tm.pid.to_string();
    let (head0, cpu0) = (head(&d).await, cpu_secs(&pid));
    let (accepted, errors, secs) = submit(&d, seconds * rate, rate, 32).await;
    let (head1, cpu1) = (head(&d).await, cpu_secs(&pid));
    let rss = mib(tm.pid, "VmRSS:");
    assert!(tm.screen().contains("● live"), "the console lost its stream under load; screen:\n{}", tm.screen());
    tm.quit();
    let text = std::fs::read_to_string(&stats).expect("the console wrote no AGENT_RUNTIME_TUI_STATS file");
    let v: Value = serde_json::from_str(&text).expect("stats json");
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Live {
        events_per_s: (head1 - head0) as f64 / secs,
        tasks_per_s: accepted as f64 / secs,
        errors,
        cpu_pct: 100.0 * (cpu1 - cpu0) / secs,
        rss,
        frames: f("frames"),
        p50: f("p50_ms"),
        p99: f("p99_ms"),
        max: f("max_ms"),
    }
}

async fn run_once(reps: usize, tasks: usize, seconds: usize, rate: usize) -> Run {
    let (d, _) = start_daemon(&[]).await;
    let dump_empty = dumps(&d, reps);

    let (accepted, errors, secs) = submit(&d, tasks, 0, 32).await;
    assert_eq!((accepted, errors), (tasks, 0), "creating {tasks} noop tasks");
    let started = Instant::now();
    while succeeded(&d).await != Some(tasks) {
        assert!(started.elapsed() < Duration::from_secs(180), "{tasks} tasks did not all succeed (now {:?})", succeeded(&d).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dump_full = dumps(&d, reps);

    let tm = Tmux::start(&d, "tasks", &[]);
    let t = Instant::now();
    let (mut last, mut sent, mut list_first) = (0, Instant::now(), f64::NAN);
    loop {
        let s = tm.screen();
        let (n, more) = tasks_title(&s);
        if n >= tasks && !more {
            break;
        }
        if last == 0 && n > 0 {
            list_first = mib(tm.pid, "VmRSS:");
        }
        // `G` again once the next page has arrived (or a second passed).
        if n > last || sent.elapsed() > Duration::from_secs(1) {
            tm.key("G");
            (last, sent) = (n, Instant::now());
        }
        assert!(t.elapsed() < Duration::from_secs(300), "the tasks view did not list {tasks} tasks; screen:\n{s}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let list_s = t.elapsed().as_secs_f64();
    let list_rss = mib(tm.pid, "VmRSS:");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (list_settled, list_peak) = (mib(tm.pid, "VmRSS:"), mib(tm.pid, "VmHWM:"));
    assert_eq!(tasks_title(&tm.screen()), (tasks, false), "the list changed after it was complete");
    tm.quit();
    drop(tm);
    drop(d);
    Run {
        dump_empty,
        dump_full,
        create_per_s: tasks as f64 / secs,
        list_s,
        list_rss,
        list_first,
        list_settled,
        list_peak,
        live: live(seconds, rate).await,
    }
}

pub async fn bench(runs: usize) {
    let reps = env_usize("BENCH_TUI_DUMPS", 20);
    let tasks = env_usize("BENCH_TUI_TASKS", 10_000);
    let seconds = env_usize("BENCH_TUI_SECONDS", 10);
    let rate = env_usize("BENCH_TUI_RATE", 200);
    let runs = runs.clamp(1, 3);
    let mut all = Vec::new();
    for _ in 0..runs {
        all.push(run_once(reps, tasks, seconds, rate).await);
    }
    let col = |f: &dyn Fn(&Run) -> f64| {
        let v: Vec<f64> = all.iter().map(f).collect();
        (median(v.clone()), v)
    };
    let (cr, _) = col(&|r| r.create_per_s);
    let stores =
        [("fresh daemon".to_string(), 0), (format!("{tasks} succeeded tasks in the store (created over the API at {cr:.0}/s)"), 1)];
    for (store, i) in stores {
        let pick = |r: &Run| if i == 0 { r.dump_empty } else { r.dump_full };
        let (p50, p50v) = col(&|r| pick(r).0);
        let (p90, _) = col(&|r| pick(r).1);
        let min = all.iter().map(|r| pick(r).2).fold(f64::INFINITY, f64::min);
        let max = all.iter().map(|r| pick(r).3).fold(0.0, f64::max);
        println!(
            "| `tui --dump overview --size 100x30` spawn to exit, {store}; {reps} per run after 2 warm-ups: p50 / p90 (target ≤ 150 ms, verdict on p90) | {p50:.1} / {p90:.1} ms, {} (p50 runs {p50v:.1?}; min {min:.1}, max {max:.1}) | {runs} |",
            verdict(p90 <= 150.0)
        );
    }
    let (rss, rv) = col(&|r| r.list_rss);
    let (peak, _) = col(&|r| r.list_peak);
    let (first, _) = col(&|r| r.list_first);
    let (settled, _) = col(&|r| r.list_settled);
    let (ls, lv) = col(&|r| r.list_s);
    println!(
        "| `tui --view tasks` under tmux ({}x{}), same daemon, `G` until all {tasks} tasks are listed (pages of 200): TUI RSS once listed (target ≤ 20 MiB) | {rss:.1} MiB, {} (runs {rv:.1?}); 2 s later {settled:.1} MiB, peak {peak:.1} MiB; with the first page {first:.1} MiB; start → all listed {ls:.2} s (runs {lv:.2?}) | {runs} |",
        SIZE.0,
        SIZE.1,
        verdict(rss <= 20.0)
    );
    let (ev, evv) = col(&|r| r.live.events_per_s);
    let (tp, _) = col(&|r| r.live.tasks_per_s);
    let errors: usize = all.iter().map(|r| r.live.errors).sum();
    let (p50, _) = col(&|r| r.live.p50);
    let (p99, p99v) = col(&|r| r.live.p99);
    let (max, _) = col(&|r| r.live.max);
    let (frames, _) = col(&|r| r.live.frames);
    println!(
        "| `tui --view activity` under tmux, fresh daemon, `noop` tasks paced at {rate}/s for {seconds} s ({tp:.0}/s submitted, {errors} errors): event log growth | {ev:.0} events/s (runs {evv:.0?}) | {runs} |"
    );
    println!(
        "| the same: frame draw time p50 / p99 / max over the console's life (`AGENT_RUNTIME_TUI_STATS`; target p99 ≤ 16 ms) | {p50:.2} / {p99:.2} / {max:.2} ms, {} (p99 runs {p99v:.2?}); {frames:.0} frames | {runs} |",
        verdict(p99 <= 16.0)
    );
    let (cpu, cv) = col(&|r| r.live.cpu_pct);
    let (lrss, lrv) = col(&|r| r.live.rss);
    println!(
        "| the same: TUI CPU over the load window (target ≤ 25 % of one core) | {cpu:.1} % of a core, {} (runs {cv:.1?}) | {runs} |",
        verdict(cpu <= 25.0)
    );
    println!("| the same: TUI RSS at the end of the load | {lrss:.1} MiB (runs {lrv:.1?}) | {runs} |");
}
