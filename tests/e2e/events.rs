//! The live event stream (`GET /api/v1/events`) over real mutual TLS:
//! live delivery, `Last-Event-ID` resume that yields exactly the missed
//! events, type filters, bad input, and a client that stops reading being
//! dropped (bounded memory) and then resuming without loss.

use crate::support::daemon::Daemon;
use crate::support::wait_until;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An event-stream request on a raw TLS connection with a tiny receive
/// buffer, which then never reads: the server's writes back up quickly.
async fn stalled_subscriber(d: &Daemon) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let pki = d.data().join("pki");
    let mut roots = rustls::RootCertStore::empty();
    for c in agent_runtime::pki::certs(&pki.join("ca.pem")).expect("ca") {
        roots.add(c).expect("root");
    }
    let (cert, key) = agent_runtime::pki::PkiDir::new(pki.clone()).client(agent_runtime::pki::LOCAL_ADMIN);
    let chain = agent_runtime::pki::certs(&cert).expect("cert");
    let key = agent_runtime::pki::key(&key).expect("key");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client auth");
    let addr: std::net::SocketAddr = d.base.trim_start_matches("https://").parse().expect("addr");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = socket.connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    tls.write_all(format!("GET /api/v1/events HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes()).await.expect("request");
    tls.flush().await.expect("flush");
    tls
}

/// A parsed SSE frame.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// Reads an SSE response frame by frame.
struct Sse {
    resp: reqwest::Response,
    buf: String,
    /// The start of a character split across chunks, until the rest arrives.
    partial: Vec<u8>,
}

impl Sse {
    async fn open(d: &Daemon, query: &str, last_id: Option<&str>) -> Sse {
        let mut req = d.http.get(format!("{}/api/v1/events{query}", d.base));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("open stream");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse { resp, buf: String::new(), partial: Vec::new() }
    }

    /// The next frame (keep-alive comments skipped); None when the stream ended.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), Value::Null);
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).expect("json data");
                    }
                }
                if raw.starts_with(':') {
                    continue;
                }
                return Some(Frame { id, event, data });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.resp.chunk()).await.expect("a frame within 20 s");
            match chunk.expect("read stream") {
                Some(bytes) => {
                    // A chunk may end inside a multi-byte character: keep that tail for the next one.
                    self.partial.extend_from_slice(&bytes);
                    let valid = match std::str::from_utf8(&self.partial) {
                        Ok(_) => self.partial.len(),
                        Err(e) if e.error_len().is_none() => e.valid_up_to(),
                        Err(e) => panic!("the stream is not UTF-8: {e}"),
                    };
                    let rest = self.partial.split_off(valid);
                    self.buf.push_str(std::str::from_utf8(&self.partial).expect("checked above"));
                    self.partial = rest;
                }
                None => return None,
            }
        }
    }

    /// Frames until one satisfies `pred` (inclusive).
    async fn until(&mut self, pred: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let mut out = Vec::new();
        loop {
            let f = self.next().await.expect("stream still open");
            let done = pred(&f);
            out.push(f);
            if done {
                return out;
            }
        }
    }
}

async fn create_noop(d: &Daemon, prompt: &str) -> String {
    let (s, b) = d.post("/api/v1/tasks", &json!({"prompt": prompt, "kind": "noop"})).await;
    assert_eq!(s, 202, "{b}");
    b["task"]["id"].as_str().expect("id").to_string()
}

fn finished(task: &str) -> impl Fn(&Frame) -> bool + '_ {
    move |f| f.event == "task.succeeded" && f.data["data"]["task_id"] == task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_gets_exactly_the_events_it_missed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;

    let mut sse = Sse::open(&d, "", None).await;
    let first = create_noop(&d, "first").await;
    let seen = sse.until(finished(&first)).await;
    let kinds: Vec<&str> = seen.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(kinds[0], "task.created", "{kinds:?}");
    assert!(kinds.contains(&"task.claimed"), "{kinds:?}");
    let ids: Vec<i64> = seen.iter().map(|f| f.id.expect("every event has an id")).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "ids are consecutive: {ids:?}");
    for f in &seen {
        assert_eq!(f.data["id"], f.id.expect("id"), "the data repeats the id");
        assert_eq!(f.data["type"], f.event.as_str());
    }
    let last_seen = *ids.last().expect("some");
    drop(sse);

    // While nobody listens: two more tasks and a chat message.
    let second = create_noop(&d, "second").await;
    let third = create_noop(&d, "third").await;
    d.wait_task(&third, "succeeded", |t| t["status"] == "succeeded").await;
    d.wait_task(&second, "succeeded", |t| t["status"] == "succeeded").await;
    assert!(d.chat("/help").await.contains("/task"));

    let (s, log) = d.get(&format!("/api/v1/events/log?after={last_seen}&limit=1000")).await;
    assert_eq!(s, 200, "{log}");
    let missed: Vec<i64> = log["items"].as_array().expect("items").iter().map(|e| e["id"].as_i64().expect("id")).collect();
    assert!(missed.len() >= 7, "two tasks' transitions and the chat: {log}");
    assert_eq!(missed[0], last_seen + 1);
    let types: Vec<&str> = log["items"].as_array().expect("items").iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert!(types.contains(&"message.inbound") && types.contains(&"message.outbound"), "{types:?}");

    let mut resumed = Sse::open(&d, "", Some(&last_seen.to_string())).await;
    let mut got = Vec::new();
    while got.len() < missed.len() {
        got.push(resumed.next().await.expect("frame").id.expect("id"));
    }
    assert_eq!(got, missed, "exactly the missed events, in order, once each");
    // And then it is live again, with no duplicates.
    let fourth = create_noop(&d, "fourth").await;
    let live = resumed.until(finished(&fourth)).await;
    assert_eq!(live[0].id, Some(missed.last().expect("some") + 1), "live continues right after the replay");

    // The `after` query parameter does the same for clients that cannot set headers;
    // a type filter keeps only matching events.
    let mut filtered = Sse::open(&d, &format!("?after={last_seen}&types=message."), None).await;
    let frames = filtered.until(|f| f.event == "message.inbound").await;
    assert!(frames.iter().all(|f| f.event.starts_with("message.")), "{frames:?}");
    assert_eq!(frames.last().expect("some").data["data"]["preview"], "/help");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resume_points_and_filters_are_refused_and_a_pruned_range_is_announced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    for (query, header, needle) in [
        ("", Some("abc"), "Last-Event-ID must be"),
        ("", Some("-4"), "Last-Event-ID must be"),
        ("?after=x", None, "invalid query"),
        ("?colour=red", None, "unknown field"),
        (&format!("?types={}", "t,".repeat(40)), None, "types: at most 32"),
    ] {
        let mut req = d.http.get(format!("{}/api/v1/events{query}", d.base));
        if let Some(h) = header {
            req = req.header("Last-Event-ID", h);
        }
        let r = req.send().await.expect("send");
        assert_eq!(r.status(), 400, "{query} {header:?}");
        let body: Value = r.json().await.expect("json error");
        assert!(body["error"].as_str().expect("error").contains(needle), "{body}");
    }
    let (s, b) = d.get("/api/v1/events/log?limit=0").await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = d.post("/api/v1/events", &json!({})).await;
    assert_eq!(s, 405, "{b}");

    // Events pruned away (simulated by deleting the oldest rows, as the
    // retention sweep does): a resume from before them is told what it missed.
    create_noop(&d, "one").await;
    let t = create_noop(&d, "two").await;
    d.wait_task(&t, "succeeded", |t| t["status"] == "succeeded").await;
    rusqlite::Connection::open(d.data().join("agent-runtime/meta.sqlite"))
        .expect("open rw")
        .execute("DELETE FROM events WHERE id < 4", [])
        .expect("prune");
    let mut sse = Sse::open(&d, "", Some("1")).await;
    let gap = sse.next().await.expect("frame");
    assert_eq!(gap.event, "gap");
    assert_eq!(gap.data, json!({"requested_after": 1, "first_available": 4}));
    assert_eq!(sse.next().await.expect("frame").id, Some(4), "then the log from what is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_resumes_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        dir.path(),
        &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into()), ("AGENT_RUNTIME_EVENTS_SLOW_CLIENT_SECONDS", "1".into())],
    )
    .await;
    let mut stalled = stalled_subscriber(&d).await;
    // Enough events to fill the socket buffers and the subscriber's queue:
    // every chat message logs an inbound and an outbound event.
    let text = "/status ".repeat(40);
    let mut handles = Vec::new();
    for w in 0..8 {
        let (http, base, text) = (d.http.clone(), d.base.clone(), text.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..800 {
                let body = json!({"text": format!("{text} {w}-{i}"), "external_id": format!("c{w}")});
                let r = http.post(format!("{base}/api/v1/chat")).json(&body).send().await.expect("chat");
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for h in handles {
        h.await.expect("sender");
    }
    wait_until("the stalled subscriber is dropped", Duration::from_secs(20), || async {
        d.log().contains("dropped an event-stream client that accepted nothing").then_some(())
    })
    .await;
    // What was already on the wire can still be read; then the stream ends.
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut raw)).await.expect("the server closed the stream").ok();
    let text = String::from_utf8_lossy(&raw);
    let ids: Vec<i64> = text.lines().filter_map(|l| l.strip_prefix("id: ")).map(|v| v.parse().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "in order, none skipped");
    let last = *ids.last().expect("some frames arrived before the stall");
    let head = d.db().query_row("SELECT max(id) FROM events", [], |r| r.get::<_, i64>(0)).expect("head");
    assert!(last < head, "the stream was cut short, not delivered in full: {last} of {head}");
    // Resuming from the last frame received delivers the rest.
    let head = d.db().query_row("SELECT max(id) FROM events", [], |r| r.get::<_, i64>(0)).expect("head");
    let mut resumed = Sse::open(&d, "", Some(&last.to_string())).await;
    let mut expect = last + 1;
    while expect <= head {
        assert_eq!(resumed.next().await.expect("frame").id, Some(expect));
        expect += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let mut sse = Sse::open(&d, "", None).await;
    let started = std::time::Instant::now();
    let status = d.terminate().await;
    assert!(status.success(), "{status:?}\n{}", d.log());
    assert!(started.elapsed() < Duration::from_secs(5), "drained in {:?}", started.elapsed());
    assert_eq!(sse.next().await, None, "the stream ended cleanly");
}
