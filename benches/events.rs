//! `BENCH_ONLY=events`: the event-stream target, "100 concurrent SSE
//! subscribers while 1,000 tasks/s change state: no subscriber lags more
//! than 1 s, RSS growth bounded", against the real release daemon over
//! mutual TLS, with the load generator on the same machine.
//!
//! Per run (a fresh daemon each): `BENCH_SUBSCRIBERS` (default 100) streams
//! of `GET /api/v1/events` are opened, then `BENCH_SUBMITTERS` (default 32)
//! callers sharing one pacer submit `noop` tasks with `POST /api/v1/tasks`
//! at `BENCH_EVENTS_RATE` (default 1,000) per second, open loop, for
//! `BENCH_SECONDS`. Every subscriber parses its frames and records, per
//! event, lag = receive time − the event's `at` (both unix ms, one clock),
//! and checks that ids rise by exactly one. Once every task has succeeded
//! and every subscriber holds the log's head, the streams are closed.
//! The daemon's RSS is read before the subscribers connect, once they are
//! connected, when the load ends, 5 s later, and after one `GET /metrics`
//! (a scan of the database, which the readers map: file-backed RSS).
//!
//! Nothing is clamped: a missed target prints the measured numbers.

use super::{Daemon, cpu_secs, env_usize, median, percentile, rss_kib, rss_line, start_daemon};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The issue's bound on any subscriber's lag.
const TARGET_LAG_MS: i64 = 1000;
/// How long the run waits, after the load, for tasks and subscribers to finish.
const DRAIN: Duration = Duration::from_secs(120);

/// The load of one run.
struct Options {
    subscribers: usize,
    submitters: usize,
    rate: u64,
    seconds: u64,
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    /// Receive time − `at`, ms, one per event frame.
    lags: Vec<i32>,
    first: Option<i64>,
    last: Option<i64>,
    /// Times an id skipped ahead, and how many ids were skipped in all.
    gaps: usize,
    missing: i64,
    /// Ids at or below one already seen.
    dupes: usize,
    /// Frames without an id or an `at` (such as `event: gap`).
    other: usize,
    /// The `at` of every `task.succeeded`.
    succeeded_at: Vec<i64>,
    last_recv_ms: i64,
    /// Why the stream ended before the run closed it.
    ended: Option<String>,
}

impl Seen {
    fn on_frame(&mut self, id: Option<i64>, at: Option<i64>, succeeded: bool, recv_ms: i64) {
        let (Some(id), Some(at)) = (id, at) else {
            self.other += 1;
            return;
        };
        match self.last {
            None => self.first = Some(id),
            Some(last) if id == last + 1 => {}
            Some(last) if id <= last => self.dupes += 1,
            Some(last) => {
                self.gaps += 1;
                self.missing += id - last - 1;
            }
        }
        self.last = Some(self.last.map_or(id, |l| l.max(id)));
        self.lags.push(i32::try_from(recv_ms - at).unwrap_or(i32::MAX));
        if succeeded {
            self.succeeded_at.push(at);
        }
        self.last_recv_ms = recv_ms;
    }
}

/// An incremental SSE parser: the fields of the frame being read and the
/// bytes of a line not yet complete.
#[derive(Default)]
struct Parser {
    buf: Vec<u8>,
    id: Option<i64>,
    at: Option<i64>,
    succeeded: bool,
    fields: bool,
}

impl Parser {
    /// Feeds one chunk; `frame(id, at, is task.succeeded)` runs for every frame it completes.
    fn feed(&mut self, chunk: &[u8], mut frame: impl FnMut(Option<i64>, Option<i64>, bool)) {
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        while let Some(n) = self.buf[pos..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[pos..pos + n];
            pos += n + 1;
            if line.is_empty() {
                if self.fields {
                    frame(self.id.take(), self.at.take(), std::mem::take(&mut self.succeeded));
                    self.fields = false;
                }
            } else if let Some(v) = line.strip_prefix(b"id: ") {
                (self.id, self.fields) = (parse_int(v), true);
            } else if let Some(v) = line.strip_prefix(b"event: ") {
                (self.succeeded, self.fields) = (v == b"task.succeeded", true);
            } else if let Some(v) = line.strip_prefix(b"data: ") {
                (self.at, self.fields) = (at_field(v), true);
            }
            // Anything else is a comment (`: keep-alive`) or a field we do not use.
        }
        self.buf.drain(..pos);
    }
}

fn parse_int(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The top-level `at` of `{"id":N,"at":MS,"type":…}`: the first `"at":` key,
/// since the daemon writes `id` and `at` before the event's own data.
fn at_field(json: &[u8]) -> Option<i64> {
    let key = b"\"at\":";
    let start = json.windows(key.len()).position(|w| w == key)? + key.len();
    let len = json[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    parse_int(&json[start..start + len])
}

fn unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How far a subscriber has read, for the run to wait on.
#[derive(Default)]
struct Progress {
    last_id: AtomicI64,
    succeeded: AtomicUsize,
}

/// Reads one stream until `cancel`, publishing how far it got in `progress`.
async fn read(mut resp: reqwest::Response, progress: Arc<Progress>, cancel: CancellationToken) -> Seen {
    let (mut seen, mut parser) = (Seen::default(), Parser::default());
    loop {
        let chunk = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            c = resp.chunk() => c,
        };
        let recv_ms = unix_ms();
        match chunk {
            Ok(Some(bytes)) => parser.feed(&bytes, |id, at, ok| seen.on_frame(id, at, ok, recv_ms)),
            Ok(None) => seen.ended = Some("the daemon closed the stream".into()),
            Err(e) => seen.ended = Some(format!("read error: {e}")),
        }
        if seen.ended.is_some() {
            break;
        }
        progress.last_id.store(seen.last.unwrap_or(0), Ordering::Relaxed);
        progress.succeeded.store(seen.succeeded_at.len(), Ordering::Relaxed);
    }
    seen
}

/// A subscriber's reader and its progress.
struct Subscriber {
    reader: JoinHandle<Seen>,
    progress: Arc<Progress>,
}

/// Opens `n` streams at once; returns once every one has its response
/// headers (the daemon subscribes before it answers, so none misses an event
/// committed after this returns).
async fn connect(d: &Daemon, n: usize, cancel: &CancellationToken) -> Vec<Subscriber> {
    let url = format!("{}/api/v1/events", d.base);
    // The harness client has a 10 s total timeout; a stream outlives it.
    let opens = (0..n).map(|_| d.http.get(&url).timeout(Duration::from_secs(3600)).send());
    let opened = tokio::time::timeout(Duration::from_secs(30), futures_util::future::join_all(opens))
        .await
        .expect("every subscriber connected within 30 s");
    opened
        .into_iter()
        .map(|r| {
            let resp = r.expect("GET /api/v1/events");
            assert_eq!(resp.status(), 200, "GET /api/v1/events");
            let progress = Arc::new(Progress::default());
            let reader = tokio::spawn(read(resp, progress.clone(), cancel.clone()));
            Subscriber { reader, progress }
        })
        .collect()
}

/// What the submitters achieved.
struct Load {
    accepted: usize,
    errors: usize,
    /// From the first scheduled start to the last answer.
    secs: f64,
    /// The most any request started after its scheduled time (the pacer's slip).
    worst_slip_ms: f64,
}

/// `POST /api/v1/tasks` (`noop`) at `o.rate` per second for `o.seconds`,
/// open loop: request i is due at start + i / rate, whoever sends it.
async fn drive(d: &Daemon, o: &Options) -> Load {
    let total = (o.rate * o.seconds) as usize;
    let interval = Duration::from_nanos(1_000_000_000 / o.rate);
    let url = format!("{}/api/v1/tasks", d.base);
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let mut joins = Vec::new();
    for _ in 0..o.submitters {
        let (http, url, next) = (d.http.clone(), url.clone(), next.clone());
        joins.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut slip) = (0, 0, Duration::ZERO);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return (ok, errors, slip);
                }
                let due = start + interval * i as u32;
                tokio::time::sleep_until(due).await;
                slip = slip.max(tokio::time::Instant::now().saturating_duration_since(due));
                let body = format!(r#"{{"prompt":"bench event {i}","kind":"noop"}}"#);
                let r = http.post(&url).header("content-type", "application/json").body(body).send().await;
                let accepted = match r {
                    Ok(r) => r.status() == 202 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                (ok, errors) = if accepted { (ok + 1, errors) } else { (ok, errors + 1) };
            }
        }));
    }
    let mut load = Load { accepted: 0, errors: 0, secs: 0.0, worst_slip_ms: 0.0 };
    for j in joins {
        let (ok, errors, slip) = j.await.expect("submitter");
        load.accepted += ok;
        load.errors += errors;
        load.worst_slip_ms = load.worst_slip_ms.max(slip.as_secs_f64() * 1000.0);
    }
    load.secs = start.elapsed().as_secs_f64();
    load
}

/// One Prometheus scrape; returns `agent_runtime_tasks{status="succeeded"}`.
async fn scrape_succeeded(d: &Daemon) -> Option<u64> {
    let text = d.http.get(format!("{}/metrics", d.base)).send().await.ok()?.text().await.ok()?;
    let key = "agent_runtime_tasks{status=\"succeeded\"} ";
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse::<f64>().ok()).map(|v| v as u64)
}

/// Polls until `done` holds (true) or `DRAIN` passes (false).
async fn poll_until<F: std::future::Future<Output = bool>>(mut done: impl FnMut() -> F) -> bool {
    let started = Instant::now();
    while started.elapsed() < DRAIN {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// One run's figures.
struct Run {
    load: Load,
    /// `task.succeeded` events seen by the subscriber that saw most.
    succeeded: usize,
    /// Per the metrics scrape at the end.
    succeeded_metric: Option<u64>,
    completed_per_s: f64,
    /// Tasks whose `task.succeeded` is stamped after the last submission's answer.
    backlog_at_end: usize,
    last_succeeded_after_s: f64,
    caught_up_after_s: Option<f64>,
    delivered_per_s: f64,
    produced_per_s: f64,
    lag: [f64; 4],
    sub_max_median: f64,
    subs_over_target: usize,
    order: [i64; 5],
    /// VmRSS, RssAnon, RssFile (MiB): before the subscribers, once they are
    /// connected, at the end of the load, 5 s later, after one `/metrics`.
    rss_mib: Vec<[f64; 3]>,
    last_rss: String,
    cpu_cores: (f64, f64),
    subscribers: usize,
    /// Why streams ended before the run closed them, each reason once.
    ended: Vec<String>,
}

/// One run on a fresh daemon.
async fn run_once(o: &Options) -> Run {
    // Room for every subscriber (issue 14 capped streams at 32 and handshakes at 64 by default).
    let streams = (o.subscribers + 8).to_string();
    let env = [
        ("AGENT_RUNTIME_LLM_PROVIDER", "none"),
        ("AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS", streams.as_str()),
        ("AGENT_RUNTIME_ADMIN_MAX_HANDSHAKES", streams.as_str()),
    ];
    let (d, _) = start_daemon(&env).await;
    let pid = d.child.id();
    let mut rss_mib = vec![rss(pid)];
    let cancel = CancellationToken::new();
    let subs = connect(&d, o.subscribers, &cancel).await;
    rss_mib.push(rss(pid));
    let pid_s = pid.to_string();
    let cpu0 = (cpu_secs(&pid_s), cpu_secs("self"));
    let load_start_ms = unix_ms();
    let load = drive(&d, o).await;
    let (load_end, load_end_ms) = (Instant::now(), unix_ms());
    let cpu_cores = ((cpu_secs(&pid_s) - cpu0.0) / load.secs, (cpu_secs("self") - cpu0.1) / load.secs);
    rss_mib.push(rss(pid));
    let after_5s = tokio::time::Instant::from_std(load_end + Duration::from_secs(5));
    let later = tokio::spawn(async move {
        tokio::time::sleep_until(after_5s).await;
        (rss(pid), rss_line(pid))
    });
    // Completion and catch-up come from the streams alone: a scan such as
    // `/metrics` maps the database into the daemon's RSS (the last sample
    // shows how much), which would blur the 5 s figure.
    let succeeded = || subs.iter().map(|s| s.progress.succeeded.load(Ordering::Relaxed)).max().unwrap_or(0);
    poll_until(|| async { succeeded() >= load.accepted }).await;
    let head = event_head(&d).await;
    let caught_up = poll_until(|| async { subs.iter().all(|s| s.progress.last_id.load(Ordering::Relaxed) >= head) }).await;
    let caught_up_after_s = caught_up.then(|| load_end.elapsed().as_secs_f64());
    let (rss_later, last_rss) = later.await.expect("RSS sample");
    rss_mib.push(rss_later);
    let succeeded_metric = scrape_succeeded(&d).await;
    rss_mib.push(rss(pid));
    cancel.cancel();
    let mut seen = Vec::new();
    for s in subs {
        seen.push(s.reader.await.expect("subscriber"));
    }
    let mut run = summarize(&seen, (load_start_ms, load_end_ms), load);
    (run.caught_up_after_s, run.cpu_cores, run.succeeded_metric) = (caught_up_after_s, cpu_cores, succeeded_metric);
    (run.rss_mib, run.last_rss) = (rss_mib, last_rss);
    run
}

/// VmRSS, RssAnon and RssFile of `pid`, MiB.
fn rss(pid: u32) -> [f64; 3] {
    ["VmRSS:", "RssAnon:", "RssFile:"].map(|field| rss_kib(pid, field) as f64 / 1024.0)
}

/// The newest event id (`head` of `/api/v1/events/log`).
async fn event_head(d: &Daemon) -> i64 {
    let url = format!("{}/api/v1/events/log?after={}&limit=1", d.base, i64::MAX);
    let v: serde_json::Value = d.http.get(url).send().await.expect("events log").json().await.expect("json");
    v["head"].as_i64().expect("head")
}

/// Lag, rates and order checks over every subscriber; `load_ms` is when the
/// load started and when its last answer came (unix ms).
fn summarize(seen: &[Seen], load_ms: (i64, i64), load: Load) -> Run {
    let (load_start_ms, load_end_ms) = load_ms;
    let mut lags: Vec<i32> = seen.iter().flat_map(|s| s.lags.iter().copied()).collect();
    lags.sort_unstable();
    let lags: Vec<f64> = lags.into_iter().map(f64::from).collect();
    let sub_max: Vec<f64> = seen.iter().map(|s| s.lags.iter().copied().max().map_or(f64::NAN, f64::from)).collect();
    let secs_since_start = |ms: i64| (ms - load_start_ms) as f64 / 1000.0;
    let delivered: Vec<f64> = seen.iter().map(|s| s.lags.len() as f64 / secs_since_start(s.last_recv_ms)).collect();
    let (first, last) = (seen.iter().filter_map(|s| s.first).min(), seen.iter().filter_map(|s| s.last).max());
    let newest = seen.iter().map(|s| s.last_recv_ms).max().unwrap_or(load_start_ms);
    let produced = first.zip(last).map_or(0, |(f, l)| l - f + 1) as f64 / secs_since_start(newest);
    let sum = |f: fn(&Seen) -> i64| seen.iter().map(f).sum::<i64>();
    let done: &[i64] = seen.iter().map(|s| s.succeeded_at.as_slice()).max_by_key(|v| v.len()).unwrap_or_default();
    let last_done = done.iter().copied().max().unwrap_or(load_start_ms);
    Run {
        succeeded: done.len(),
        succeeded_metric: None,
        completed_per_s: done.len() as f64 / secs_since_start(last_done),
        backlog_at_end: done.iter().filter(|at| **at > load_end_ms).count(),
        last_succeeded_after_s: (last_done - load_end_ms) as f64 / 1000.0,
        caught_up_after_s: None,
        delivered_per_s: median(delivered),
        produced_per_s: produced,
        lag: if lags.is_empty() {
            [f64::NAN; 4]
        } else {
            [percentile(&lags, 0.50), percentile(&lags, 0.99), percentile(&lags, 0.999), lags[lags.len() - 1]]
        },
        subs_over_target: sub_max.iter().filter(|m| **m > TARGET_LAG_MS as f64).count(),
        sub_max_median: median(sub_max),
        order: [
            sum(|s| s.gaps as i64),
            sum(|s| s.missing),
            sum(|s| s.dupes as i64),
            sum(|s| s.other as i64),
            sum(|s| i64::from(s.ended.is_some())),
        ],
        rss_mib: Vec::new(),
        last_rss: String::new(),
        cpu_cores: (0.0, 0.0),
        subscribers: seen.len(),
        ended: seen.iter().filter_map(|s| s.ended.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect(),
        load,
    }
}

/// `BENCH_ONLY=events`: `runs` runs (at most 3), each on a fresh daemon; prints medians.
pub async fn bench(runs: usize, seconds: u64) {
    let o = Options {
        subscribers: env_usize("BENCH_SUBSCRIBERS", 100),
        submitters: env_usize("BENCH_SUBMITTERS", 32),
        rate: env_usize("BENCH_EVENTS_RATE", 1000) as u64,
        seconds,
    };
    let runs = runs.min(3);
    let mut all = Vec::new();
    for _ in 0..runs {
        all.push(run_once(&o).await);
    }
    report(&o, &all);
}

/// The median of `f` over the runs, and every run's value.
fn col(all: &[Run], f: impl Fn(&Run) -> f64) -> (f64, Vec<f64>) {
    let v: Vec<f64> = all.iter().map(f).collect();
    (median(v.clone()), v)
}

fn secs_or_never(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::INFINITY)
}

/// Prints the rows: the load, the lag and order, memory and CPU.
fn report(o: &Options, all: &[Run]) {
    report_load(o, all);
    report_lag(o, all);
    report_memory(o, all);
}

fn report_load(o: &Options, all: &[Run]) {
    let n = all.len();
    let (sub, sub_runs) = col(all, |r| r.load.accepted as f64 / r.load.secs);
    let errors: usize = all.iter().map(|r| r.load.errors).sum();
    let (slip, slip_runs) = col(all, |r| r.load.worst_slip_ms);
    println!(
        "| events: {} SSE subscribers (GET /api/v1/events, mTLS) while `noop` tasks are paced at {}/s open loop by {} submitters for {} s: tasks submitted | {sub:.0}/s (runs: {sub_runs:.0?}); {errors} errors; worst pacer slip {slip:.0} ms (runs: {slip_runs:.0?}) | {n} |",
        o.subscribers, o.rate, o.submitters, o.seconds
    );
    let (done, done_runs) = col(all, |r| r.completed_per_s);
    let (backlog, backlog_runs) = col(all, |r| r.backlog_at_end as f64);
    let (last, last_runs) = col(all, |r| r.last_succeeded_after_s);
    let counts = all
        .iter()
        .map(|r| {
            format!("{} of {} ({} per /metrics)", r.succeeded, r.load.accepted, r.succeeded_metric.map_or("?".into(), |v| v.to_string()))
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "| tasks completed (task.succeeded events ÷ load start → the last one's `at`) | {done:.0}/s (runs: {done_runs:.0?}); succeeded after the last submission was answered: {backlog:.0} (runs: {backlog_runs:.0?}), the last {last:.2} s after it (runs: {last_runs:.2?}); succeeded per run: {counts} | {n} |"
    );
    let (del, del_runs) = col(all, |r| r.delivered_per_s);
    let (prod, prod_runs) = col(all, |r| r.produced_per_s);
    println!(
        "| events delivered per subscriber (median subscriber, load start → its last frame) | {del:.0}/s (runs: {del_runs:.0?}); the log grew {prod:.0}/s (runs: {prod_runs:.0?}) | {n} |"
    );
}

fn report_lag(o: &Options, all: &[Run]) {
    let n = all.len();
    let lag = |i: usize| col(all, move |r| r.lag[i]);
    let ((p50, _), (p99, p99_runs), (p999, _), (max, max_runs)) = (lag(0), lag(1), lag(2), lag(3));
    println!(
        "| lag (receive time − event `at`) over every subscriber's frames: p50 / p99 / p99.9 / max | {p50:.0} / {p99:.0} / {p999:.0} / {max:.0} ms (p99 runs: {p99_runs:.0?}; max runs: {max_runs:.0?}) | {n} |"
    );
    let (sub_max, sub_max_runs) = col(all, |r| r.sub_max_median);
    let over: Vec<usize> = all.iter().map(|r| r.subs_over_target).collect();
    println!(
        "| per-subscriber max lag: median subscriber; subscribers over {TARGET_LAG_MS} ms per run | {sub_max:.0} ms (runs: {sub_max_runs:.0?}); {over:?} of {} | {n} |",
        o.subscribers
    );
    let met = all.iter().filter(|r| r.lag[3] <= TARGET_LAG_MS as f64).count();
    let verdict = if met == n { "met" } else { "missed" };
    println!(
        "| target: no subscriber lags more than {TARGET_LAG_MS} ms | {verdict} in {met} of {n} runs (worst lag per run: {max_runs:.0?} ms) | {n} |"
    );
    let order: Vec<i64> = (0..5).map(|i| all.iter().map(|r| r.order[i]).sum()).collect();
    let connected: Vec<usize> = all.iter().map(|r| r.subscribers).collect();
    println!(
        "| stream order, summed over runs: id gaps (ids missing) / ids not above the last / frames without id or `at` / streams that ended early | {} ({}) / {} / {} / {} (subscribers per run: {connected:?}; why streams ended: {:?}) | {n} |",
        order[0],
        order[1],
        order[2],
        order[3],
        order[4],
        all.iter().flat_map(|r| r.ended.iter()).collect::<Vec<_>>()
    );
    let (caught, caught_runs) = col(all, |r| secs_or_never(r.caught_up_after_s));
    println!(
        "| every subscriber held the log's head (after every task succeeded) | {caught:.1} s after the load ended (runs: {caught_runs:.1?}) | {n} |"
    );
}

fn report_memory(o: &Options, all: &[Run]) {
    let n = all.len();
    let rss = |i: usize, k: usize| col(all, move |r| r.rss_mib[i][k]);
    let points = |k: usize| (0..5).map(|i| format!("{:.1}", rss(i, k).0)).collect::<Vec<_>>().join(" / ");
    let ((_, end_runs), (_, later_runs)) = (rss(2, 0), rss(3, 0));
    println!(
        "| daemon RSS: before subscribers / {} connected / end of load / 5 s later / after one GET /metrics | {} MiB (anon {}; file-backed {}); end-of-load runs: {end_runs:.1?}; 5 s later runs: {later_runs:.1?} | {n} |",
        o.subscribers,
        points(0),
        points(1),
        points(2)
    );
    println!("| daemon RSS 5 s after the load, last run | {} | 1 |", all.last().map_or("", |r| r.last_rss.as_str()));
    let (dcpu, dcpu_runs) = col(all, |r| r.cpu_cores.0);
    let (hcpu, hcpu_runs) = col(all, |r| r.cpu_cores.1);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "| CPU during the load (of {cores} cores): daemon / this harness (subscribers + submitters) | {dcpu:.2} / {hcpu:.2} cores (runs: {dcpu_runs:.2?} / {hcpu_runs:.2?}) | {n} |"
    );
}
