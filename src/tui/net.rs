//! The console's network side: each [`Cmd`] becomes one admin-API call whose
//! answer comes back as a [`Msg`]; one task follows `/api/v1/events`,
//! resuming with `Last-Event-ID` after a drop (no gap, no repeat), with a
//! capped exponential backoff while the daemon is away.

use super::app::{CHAT_ID, Cmd, Link, Loaded, Msg, Resource};
use super::model::{Approval, AuditRow, ChatMessage, Context, Event, Gauges, Heartbeat, Info, Objective, Pairing, Task, TaskRow, UsageRow};
use crate::client::{ApiClient, ClientError};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// How many tasks one page fetches.
pub const TASK_PAGE: u32 = 200;

/// Drops `null` members (recursively), so a field the API sends as null
/// takes the model's default instead of failing the whole row.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The rows of `v[key]`, taken out of the page (not copied); a row that
/// does not decode is skipped (and counted in the log).
pub fn items<T: DeserializeOwned>(mut v: Value, key: &str) -> Vec<T> {
    let Value::Array(rows) = v[key].take() else { return Vec::new() };
    let mut out = Vec::with_capacity(rows.len());
    for mut row in rows {
        strip_nulls(&mut row);
        match serde_json::from_value(row) {
            Ok(x) => out.push(x),
            Err(e) => tracing::debug!(error = %e, "skipped a row the console cannot read"),
        }
    }
    out
}

/// Decodes one API object.
pub fn decode<T: DeserializeOwned>(mut v: Value) -> Result<T, ClientError> {
    strip_nulls(&mut v);
    serde_json::from_value(v).map_err(|e| ClientError::Decode { url: "admin API".into(), message: e.to_string() })
}

/// Fetches one resource.
pub async fn load(client: &ApiClient, r: Resource, task_status: Option<&str>) -> Result<Loaded, ClientError> {
    let q = |pairs: &[(&'static str, &str)]| pairs.iter().map(|(k, v)| (*k, (*v).to_string())).collect::<Vec<_>>();
    Ok(match r {
        Resource::Heartbeat => Loaded::Heartbeat(decode::<Heartbeat>(client.get("/api/v1/heartbeat", &[]).await?)?),
        Resource::Gauges => Loaded::Gauges(Gauges::parse(&client.get_text("/metrics").await?)),
        Resource::Tasks => return tasks(client, task_status, None).await,
        Resource::Approvals => {
            let pending: Value = client.get("/api/v1/approvals", &q(&[("status", "pending"), ("limit", "500")])).await?;
            let recent: Value = client.get("/api/v1/approvals", &q(&[("limit", "100")])).await?;
            let mut all: Vec<Approval> = items(pending, "approvals");
            all.extend(items::<Approval>(recent, "approvals").into_iter().filter(|a| a.status != "pending"));
            Loaded::Approvals(all)
        }
        Resource::Objectives => {
            let v: Value = client.get("/api/v1/objectives", &q(&[("active_only", "false"), ("limit", "500")])).await?;
            Loaded::Objectives(items::<Objective>(v, "items"))
        }
        Resource::Pairings => {
            let v: Value = client.get("/api/v1/pairings", &q(&[("limit", "200")])).await?;
            let mut all: Vec<Pairing> = items(v, "pairings");
            // Pending first, then newest first as the API lists them.
            all.sort_by_key(|p| p.status != "pending");
            Loaded::Pairings(all)
        }
        Resource::Contexts => {
            let v: Value = client.get("/api/v1/contexts", &q(&[("limit", "500")])).await?;
            let mut all: Vec<Context> = items(v, "items");
            all.sort_by(|a, b| (&a.workspace_id, !a.is_admin, a.created_at_unix).cmp(&(&b.workspace_id, !b.is_admin, b.created_at_unix)));
            Loaded::Contexts(all)
        }
        Resource::Audit => Loaded::Audit(items::<AuditRow>(client.get("/api/v1/audit", &q(&[("limit", "500")])).await?, "events")),
        Resource::Usage => {
            let v: Value = client.get("/api/v1/usage", &[]).await?;
            let budget = if v["budget"].is_object() { crate::cli::budget_lines(&v["budget"]) } else { Vec::new() };
            Loaded::Usage(items::<UsageRow>(v, "items"), budget)
        }
        Resource::ChatMessages => {
            let v: Value = client.get("/api/v1/chat/messages", &q(&[("external_id", CHAT_ID), ("limit", "500")])).await?;
            Loaded::ChatMessages(items::<ChatMessage>(v, "items"))
        }
    })
}

/// A page of tasks: the first, or the one older than `before`.
pub async fn tasks(client: &ApiClient, status: Option<&str>, before: Option<&str>) -> Result<Loaded, ClientError> {
    let mut q = vec![("limit", TASK_PAGE.to_string())];
    q.extend(status.map(|s| ("status", s.to_string())));
    q.extend(before.map(|b| ("before", b.to_string())));
    let v: Value = client.get("/api/v1/tasks", &q).await?;
    let next = v["next_before"].as_str().map(str::to_string);
    let rows = items::<Task>(v, "items").into_iter().map(TaskRow::from).collect();
    Ok(Loaded::Tasks { items: rows, next, more: before.is_some() })
}

fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Api { status, message } => format!("{message} (HTTP {status})"),
        other => other.to_string(),
    }
}

/// Makes one call and reports its outcome on `tx`.
pub async fn run(client: ApiClient, cmd: Cmd, task_status: Option<&'static str>, tx: UnboundedSender<Msg>) {
    let msg = match perform(&client, &cmd, task_status).await {
        Ok(msg) => msg,
        Err(e) => match cmd {
            Cmd::Load(r) => Msg::LoadFailed(Some(r), describe(&e)),
            Cmd::MoreTasks { .. } | Cmd::TaskDetail(_) => Msg::LoadFailed(None, describe(&e)),
            _ => Msg::Done(Err(describe(&e))),
        },
    };
    let _ = tx.send(msg);
}

async fn perform(client: &ApiClient, cmd: &Cmd, task_status: Option<&str>) -> Result<Msg, ClientError> {
    let done = |text: String| Ok(Msg::Done(Ok(text)));
    let short = super::act::short_id;
    match cmd {
        Cmd::Load(r) => Ok(Msg::Loaded(load(client, *r, task_status).await?)),
        Cmd::MoreTasks { status, before } => Ok(Msg::Loaded(tasks(client, *status, Some(before)).await?)),
        Cmd::TaskDetail(id) => {
            Ok(Msg::Loaded(Loaded::TaskDetail(Box::new(decode(client.get(&format!("/api/v1/tasks/{id}"), &[]).await?)?))))
        }
        Cmd::Approve(id) => {
            let a: Approval = decode(client.post(&format!("/api/v1/approvals/{id}/approve"), &json!({})).await?)?;
            done(format!("approved {}: execution {}", a.id, a.execution_status))
        }
        Cmd::Deny { id, reason } => {
            let body = if reason.is_empty() { json!({}) } else { json!({ "reason": reason }) };
            let _: Value = client.post(&format!("/api/v1/approvals/{id}/deny"), &body).await?;
            done(format!("denied {id}"))
        }
        Cmd::CancelTask(id) => {
            let v: Value = client.post(&format!("/api/v1/tasks/{id}/cancel"), &json!({})).await?;
            done(format!("task {}: {}", short(id), v["outcome"].as_str().unwrap_or("canceled")))
        }
        Cmd::RetryTask(id) => {
            let _: Value = client.post(&format!("/api/v1/tasks/{id}/retry"), &json!({})).await?;
            done(format!("task {} queued again", short(id)))
        }
        Cmd::SetObjectiveActive { id, active } => {
            let o: Objective = decode(client.post("/api/v1/objectives/active", &json!({"id": id, "active": active})).await?)?;
            done(format!("\"{}\" {}", o.title, if o.active { "resumed" } else { "paused" }))
        }
        Cmd::DeleteObjective(id) => {
            let _: Value = client.post("/api/v1/objectives/delete", &json!({ "id": id })).await?;
            done(format!("objective {} deleted", short(id)))
        }
        Cmd::RunObjective(id) => {
            let v: Value = client.post(&format!("/api/v1/objectives/{id}/run"), &json!({})).await?;
            done(format!("objective {} running as task {}", short(id), short(v["task_id"].as_str().unwrap_or("-"))))
        }
        Cmd::PairingLookup(token) => {
            let p: Pairing = decode(client.post("/api/v1/pairings/lookup", &json!({ "token": token })).await?)?;
            Ok(Msg::Loaded(Loaded::PairingFound(Box::new(p))))
        }
        Cmd::PairingApprove { token, role } => {
            let v: Value = client.post("/api/v1/pairings/approve", &json!({"token": token, "role": role.as_str()})).await?;
            done(format!("linked as {} ({})", v["user"]["display_name"].as_str().unwrap_or("-"), role.as_str()))
        }
        Cmd::PairingDeny(token) => {
            let _: Value = client.post("/api/v1/pairings/deny", &json!({ "token": token })).await?;
            done("pairing denied".into())
        }
        Cmd::SetAdmin { id, admin } => {
            let _: Value = client.post(&format!("/api/v1/contexts/{id}/admin"), &json!({ "admin": admin })).await?;
            done(format!("{} is {} an admin channel", short(id), if *admin { "now" } else { "no longer" }))
        }
        Cmd::SaveObjective { update, body } => {
            let path = if *update { "/api/v1/objectives/update" } else { "/api/v1/objectives" };
            let o: Objective = decode(client.post(path, body).await?)?;
            done(format!("objective \"{}\" {}", o.title, if *update { "saved" } else { "created" }))
        }
        Cmd::Chat(text) => {
            let v: Value = client.post("/api/v1/chat", &json!({"connector": "codex", "external_id": CHAT_ID, "text": text})).await?;
            // The reply is an outbound message of this chat: it arrives with the event that stores it.
            done(if v["handled"] == true { "sent".into() } else { "recorded (not answered)".into() })
        }
    }
}

/// Who we are and the event backlog, then the live stream for as long as
/// `tx` has a receiver. Reports the link's state as it changes.
pub async fn follow(client: ApiClient, tx: UnboundedSender<Msg>, backlog: u32) {
    let mut last: Option<i64> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        match connect(&client, &tx, &mut last, backlog).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => {
                let retry_at = now + i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX);
                if tx.send(Msg::Link(Link::Down { error: describe(&e), retry_at })).is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        }
        if tx.is_closed() {
            return;
        }
        let retry_at = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        if tx.send(Msg::Link(Link::Down { error: "the event stream ended".into(), retry_at })).is_err() {
            return;
        }
    }
}

/// One connection: on the first, info and the backlog; then frames until the stream ends.
async fn connect(client: &ApiClient, tx: &UnboundedSender<Msg>, last: &mut Option<i64>, backlog: u32) -> Result<(), ClientError> {
    let info: Info = decode(client.get("/api/v1/info", &[]).await?)?;
    let _ = tx.send(Msg::Loaded(Loaded::Info(info)));
    let start = match *last {
        Some(id) => id,
        None => {
            let page: Value = client.get("/api/v1/events/log", &[("limit", backlog.max(1).to_string())]).await?;
            let head = page["head"].as_i64().unwrap_or(0);
            let after = (head - i64::from(backlog)).max(0);
            let page: Value =
                client.get("/api/v1/events/log", &[("after", after.to_string()), ("limit", backlog.max(1).to_string())]).await?;
            let resume = page["next_after"].as_i64().unwrap_or(head).max(head);
            let _ = tx.send(Msg::Loaded(Loaded::Backlog(items::<Event>(page, "items"))));
            resume
        }
    };
    *last = Some(start);
    let mut resp = client.open_stream("/api/v1/events", &[], Some(start)).await?;
    let _ = tx.send(Msg::Link(Link::Live));
    let mut buf = String::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| ClientError::Unreachable { url: "event stream".into(), message: e.to_string() })?;
        let Some(bytes) = chunk else { return Ok(()) };
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let Some(event) = parse_frame(&frame) {
                *last = Some(event.id);
                if tx.send(Msg::Event(Box::new(event))).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// One SSE frame's event (`None` for comments, `gap` notices and anything else).
pub fn parse_frame(frame: &str) -> Option<Event> {
    let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
    let is_gap = frame.lines().any(|l| l == "event: gap");
    let event: Event = serde_json::from_str(data).ok()?;
    (!is_gap && event.id > 0).then_some(event)
}
