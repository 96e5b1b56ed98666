//! The admin listener's bounded intake (issue 14, item 9), with the real
//! binary: a flood of idle sockets neither locks out a real client nor
//! holds the daemon's file descriptors; running out of descriptors is
//! logged and survived; past the connection and event-stream caps a caller
//! gets 503, and a freed place is used again.

use crate::support::daemon::{Daemon, tls_client};
use crate::support::wait_until;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The soft and hard `RLIMIT_NOFILE` of process `pid` ("self" for this one).
fn fd_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
    let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (nums[0], nums[1])
}

/// Sets the soft `RLIMIT_NOFILE` of `pid` with util-linux `prlimit` (the
/// crate forbids the `unsafe` a direct `setrlimit` would need).
fn set_soft_fd_limit(pid: &str, soft: u64) {
    let pid = if pid == "self" { std::process::id().to_string() } else { pid.to_string() };
    let hard = fd_limits(&pid).1;
    let status = std::process::Command::new("prlimit").args(["--pid", &pid, &format!("--nofile={soft}:{hard}")]).status();
    assert!(status.is_ok_and(|s| s.success()), "prlimit (util-linux) must be installed to set descriptor limits");
}

/// Makes sure this process may open `n` more descriptors than it has.
fn room_for_descriptors(n: u64) {
    let (soft, hard) = fd_limits("self");
    let needed = open_fds("self") + n;
    if soft < needed {
        assert!(hard >= needed, "this test needs {needed} file descriptors; the hard limit is {hard}");
        set_soft_fd_limit("self", needed);
    }
}

fn open_fds(pid: &str) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd").count() as u64
}

/// `n` TCP connections to `addr` that never say anything, 100 at a time.
async fn idle_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(n);
    while idle.len() < n {
        let batch = futures_util::future::join_all((0..100.min(n - idle.len())).map(|_| TcpStream::connect(addr)));
        let batch = tokio::time::timeout(Duration::from_secs(30), batch).await.expect("connecting the idle sockets");
        idle.extend(batch.into_iter().map(|c| c.expect("connect")));
    }
    idle
}

async fn wait_for_log(d: &Daemon, needle: &str) {
    wait_until(needle, Duration::from_secs(10), || {
        let log = d.log();
        async move { log.contains(needle).then_some(()) }
    })
    .await;
}

/// Regression (issue 14): every accepted socket got its own handshake task
/// for the whole handshake timeout, with no cap, so idle sockets held as
/// many descriptors as an attacker opened (until `EMFILE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_neither_lock_out_a_real_client_nor_pile_up() {
    room_for_descriptors(2_500);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await; // 64 handshakes, 10 s handshake timeout
    let (pid, addr) = (d.pid().to_string(), d.base.trim_start_matches("https://").to_string());
    let baseline = open_fds(&pid);
    let idle = idle_connections(&addr, 2_000).await;

    let started = Instant::now();
    let r = tls_client(&d.data(), "local-admin").get(format!("{}/api/v1/info", d.base)).send().await.expect("a real client");
    assert_eq!(r.status(), 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "the real client waited {waited:?} (the idle ones time out only after 10 s)");
    wait_for_log(&d, "TLS handshake cap reached (AGENT_RUNTIME_ADMIN_MAX_HANDSHAKES)").await;
    // At most the 64 newest idle sockets are held (plus the real client's, if still open).
    let bound = baseline + 64 + 8;
    wait_until("the daemon holding a bounded number of descriptors", Duration::from_secs(10), || {
        let fds = open_fds(&pid);
        async move { (fds <= bound).then_some(()) }
    })
    .await;
    let lines = d.log().lines().filter(|l| l.contains("TLS handshake cap reached")).count();
    assert!(lines <= 15, "a flood makes about one line a second, not one per socket: {lines}");
    drop(idle);
}

/// When the daemon runs out of file descriptors, `accept` fails: that is
/// logged, the oldest socket still in its handshake is dropped to free one,
/// and the loop goes on; a real client is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_listener_logs_frees_one_and_keeps_serving() {
    room_for_descriptors(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let (pid, addr) = (d.pid().to_string(), d.base.trim_start_matches("https://").to_string());
    let (soft, _) = fd_limits(&pid);
    set_soft_fd_limit(&pid, open_fds(&pid) + 8);
    let idle = idle_connections(&addr, 48).await;
    wait_for_log(&d, "accept failed on the admin listener; backing off").await;
    let r = tls_client(&d.data(), "local-admin").get(format!("{}/api/v1/info", d.base)).send().await.expect("a real client");
    assert_eq!(r.status(), 200);
    set_soft_fd_limit(&pid, soft);
    assert_eq!(d.get("/readyz").await.0, 200, "and the daemon is well");
    drop(idle);
}

/// `c` if it got a 200 for `url`; the body is read to its end, so the
/// connection goes back to the client's pool and stays open.
async fn served(c: reqwest::Client, url: &str) -> Option<reqwest::Client> {
    let r = c.get(url).send().await.ok()?;
    let ok = r.status() == 200;
    r.bytes().await.ok()?;
    ok.then_some(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_new_connection_gets_503_and_a_freed_place_is_used_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS", "2".into())]).await;
    let url = format!("{}/api/v1/info", d.base);
    // The harness's client may keep a connection or two: drop them, then
    // hold both places with two clients of our own, one connection each.
    d.http = reqwest::Client::new();
    let (_first, second) = wait_until("two clients holding both places", Duration::from_secs(10), || async {
        let (a, b) = (tls_client(&d.data(), "local-admin"), tls_client(&d.data(), "local-admin"));
        Some((served(a, &url).await?, served(b, &url).await?))
    })
    .await;

    let r = tls_client(&d.data(), "local-admin").get(&url).send().await.expect("an answer, not a reset");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let v: Value = r.json().await.expect("json");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("maximum of 2 connections (AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS)")), "{v}");
    wait_for_log(&d, "admin connection cap reached (AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS)").await;

    drop(second);
    wait_until("a place freed by a closed connection", Duration::from_secs(10), || async {
        let r = tls_client(&d.data(), "local-admin").get(&url).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_subscriber_cap_an_event_stream_gets_503_until_one_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS", "2".into())]).await;
    let open = || d.http.get(format!("{}/api/v1/events", d.base)).send();
    let first = open().await.expect("first");
    let second = open().await.expect("second");
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = open().await.expect("third");
    assert_eq!(third.status(), 503);
    let v: Value = third.json().await.expect("json");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("2 event streams are open")), "{v}");
    wait_for_log(&d, "event-stream subscriber cap reached (AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS)").await;
    assert_eq!(d.get("/api/v1/events/log").await.0, 200, "the log pages are not capped");

    drop(first);
    let again = wait_until("a stream's place freed when its client went", Duration::from_secs(10), || async {
        open().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    drop((second, again));
}
