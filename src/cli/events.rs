//! `agent-runtime events [--follow]`: the event log, and the live stream
//! with automatic resume (`Last-Event-ID`) after a dropped connection.

use super::print_json;
use crate::client::{ApiClient, ClientError};
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

/// `events` arguments.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Keep streaming new events (reconnecting and resuming after drops) until interrupted.
    #[arg(long, short)]
    pub follow: bool,
    /// Start after this event id (default: the last --limit events).
    #[arg(long)]
    pub after: Option<i64>,
    /// Only these type prefixes, comma-separated (task.,approval.,message.,health.,pairing.,objective.).
    #[arg(long)]
    pub types: Option<String>,
    /// How many past events to print first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

fn print_event(e: &Value, json: bool) {
    if json {
        outln!("{e}");
        return;
    }
    let at = crate::clock::rfc3339(e["at"].as_i64().unwrap_or(0));
    let mut data = e["data"].clone();
    if let Some(m) = data.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    outln!("{:>8}  {at}  {:<22}  {data}", e["id"], e["type"].as_str().unwrap_or("-"));
}

/// Runs `events`.
pub async fn run(client: ApiClient, a: EventsArgs) -> anyhow::Result<ExitCode> {
    let types: Vec<(&str, String)> = a.types.clone().map(|t| ("types", t)).into_iter().collect();
    let mut last = match a.after {
        Some(n) => n,
        None => {
            let head: Value = client.get("/api/v1/events/log", &[("limit", "1".into())]).await?;
            (head["head"].as_i64().unwrap_or(0) - i64::from(a.limit)).max(0)
        }
    };
    // The backlog, page by page.
    loop {
        let mut q = vec![("after", last.to_string()), ("limit", "1000".to_string())];
        q.extend(types.iter().cloned());
        let page: Value = client.get("/api/v1/events/log", &q).await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        for e in &items {
            print_event(e, a.json);
        }
        last = page["next_after"].as_i64().unwrap_or(last);
        if items.len() < 1000 {
            if !a.follow && !a.json && items.is_empty() {
                outln!("(no events after {last})");
            }
            break;
        }
    }
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut backoff = Duration::from_millis(500);
    loop {
        match follow(&client, &types, &mut last, a.json).await {
            Ok(()) => {}
            Err(ClientError::Api { status, message }) if status < 500 => {
                anyhow::bail!("the event stream was refused ({status}): {message}");
            }
            Err(e) => eprintln!("event stream interrupted ({e}); resuming after event {last} in {backoff:?}"),
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Streams until the connection ends; `last` tracks the resume point.
async fn follow(client: &ApiClient, types: &[(&str, String)], last: &mut i64, json: bool) -> Result<(), ClientError> {
    let mut resp = client.open_stream("/api/v1/events", types, Some(*last)).await?;
    let mut buf = String::new();
    loop {
        let chunk = tokio::select! {
            _ = tokio::signal::ctrl_c() => std::process::exit(0),
            c = resp.chunk() => c,
        };
        let Some(bytes) = chunk.map_err(|e| ClientError::Unreachable { url: "event stream".into(), message: e.to_string() })? else {
            return Ok(());
        };
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut event = None;
            let mut data = None;
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str::<Value>(v).ok();
                }
            }
            match (event.as_deref(), data) {
                (Some("gap"), Some(d)) => eprintln!("note: events before {} were pruned and cannot be shown", d["first_available"]),
                (_, Some(d)) if d.get("id").is_some() => {
                    *last = d["id"].as_i64().unwrap_or(*last);
                    print_event(&d, json);
                }
                _ => {}
            }
        }
    }
}

/// `agent-runtime health`: the heartbeat.
pub async fn health(client: ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let v: Value = client.get("/api/v1/heartbeat", &[]).await?;
    // The same status with --json: scripts read the JSON and branch on the exit code.
    let status = if v["overall"] == "healthy" { ExitCode::SUCCESS } else { ExitCode::from(1) };
    if json {
        print_json(&v);
        return Ok(status);
    }
    outln!("overall: {}", v["overall"].as_str().unwrap_or("-"));
    outln!("{:<22}  {:<9}  {:<20}  DETAIL", "COMPONENT", "STATE", "LAST BEAT");
    for c in v["components"].as_array().into_iter().flatten() {
        let beat = c["last_beat_at_unix"].as_i64().map_or_else(|| "-".to_string(), |t| crate::clock::rfc3339(t * 1000));
        let detail = c["error"].as_str().or(c["message"].as_str()).unwrap_or("");
        outln!("{:<22}  {:<9}  {:<20}  {detail}", c["name"].as_str().unwrap_or("-"), c["state"].as_str().unwrap_or("-"), beat);
    }
    if let Some(db) = v.get("database") {
        let mib = |k: &str| db[k].as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0);
        outln!("database: {:.1} MiB ({:.1} MiB free inside), WAL {:.1} MiB", mib("file_bytes"), mib("free_bytes"), mib("wal_bytes"));
    }
    Ok(status)
}
