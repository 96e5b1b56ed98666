//! The Bot API side: one axum fallback handler that checks the token, parses
//! JSON, form or query parameters, applies injected faults and routes each
//! method (case-insensitive) to its handler; file downloads; error replies.

use super::state::{Inner, St, now};
use super::{BOT_ID, BOT_USERNAME, Edit, Fault, MAX_DOWNLOAD, MAX_TEXT_UTF16, Sent, bot_user};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A Bot API error reply.
struct ApiErr {
    code: u16,
    description: String,
    retry_after: Option<u32>,
}

fn api_err(code: u16, description: &str) -> ApiErr {
    ApiErr { code, description: description.into(), retry_after: None }
}

fn bad(what: &str) -> ApiErr {
    api_err(400, &format!("Bad Request: {what}"))
}

impl From<Fault> for ApiErr {
    fn from(f: Fault) -> ApiErr {
        match f {
            Fault::RetryAfter(s) => ApiErr { retry_after: Some(s), ..api_err(429, &format!("Too Many Requests: retry after {s}")) },
            Fault::Conflict => {
                api_err(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running")
            }
            Fault::ChatNotFound => bad("chat not found"),
            Fault::Blocked => api_err(403, "Forbidden: bot was blocked by the user"),
            Fault::Status(code, d) => api_err(code, &d),
        }
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut body = json!({"ok": false, "error_code": self.code, "description": self.description});
        if let Some(s) = self.retry_after {
            body["parameters"] = json!({"retry_after": s});
        }
        (StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response()
    }
}

type Params = Map<String, Value>;
type Reply = Result<Value, ApiErr>;

pub(super) async fn handle(State(inner): State<Arc<Inner>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().trim_start_matches('/');
    if let Some(rest) = path.strip_prefix("file/")
        && method == Method::GET
    {
        return download(&inner, rest);
    }
    let Some((bot, name)) = path.split_once('/') else { return api_err(404, "Not Found").into_response() };
    if bot.strip_prefix("bot").map(percent_decode).as_deref() != Some(inner.token.as_str()) {
        return api_err(401, "Unauthorized").into_response();
    }
    let name = name.to_ascii_lowercase();
    let p = params(&uri, &headers, &body);
    let arrived = Instant::now();
    let reply = call(&inner, &name, &p).await;
    let response = match reply {
        Ok(result) => axum::Json(json!({"ok": true, "result": result})).into_response(),
        Err(e) => e.into_response(),
    };
    if name == "getupdates" {
        inner.lock().poll_log.push((arrived, int(&p, "offset"), response.status().as_u16()));
    }
    response
}

async fn call(inner: &Inner, name: &str, p: &Params) -> Reply {
    {
        let mut st = inner.lock();
        *st.calls.entry(name.into()).or_default() += 1;
        if name == "getupdates" && st.conflict {
            return Err(Fault::Conflict.into());
        }
        if let Some(fault) = st.faults.get_mut(name).and_then(VecDeque::pop_front).flatten() {
            return Err(fault.into());
        }
    }
    match name {
        "getme" => Ok(json!({"id": BOT_ID, "is_bot": true, "first_name": "Agent", "username": BOT_USERNAME, "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false})),
        "getwebhookinfo" => Ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": inner.lock().queue.len()})),
        "deletewebhook" => {
            if string(p, "drop_pending_updates").as_deref() == Some("true") {
                inner.lock().queue.clear();
            }
            Ok(json!(true))
        }
        "sendchataction" => Ok(json!(true)),
        "getupdates" => get_updates(inner, p).await,
        "sendmessage" => send_message(inner, p).await,
        "editmessagetext" => edit_message_text(&mut inner.lock(), p),
        "answercallbackquery" => answer_callback_query(&mut inner.lock(), p),
        "setmycommands" => set_my_commands(&mut inner.lock(), p),
        "getfile" => get_file(&inner.lock(), p),
        _ => Err(api_err(404, "Not Found: method not found")),
    }
}

async fn get_updates(inner: &Inner, p: &Params) -> Reply {
    let limit = int(p, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(int(p, "timeout").unwrap_or(0).max(0) as u64);
    {
        let mut st = inner.lock();
        if let Some(offset) = int(p, "offset").filter(|o| *o > st.confirmed) {
            st.confirmed = offset;
            st.queue.retain(|u| u.id >= offset);
        }
        if let Some(Value::Array(kinds)) = obj(p, "allowed_updates") {
            let kinds: Vec<String> = kinds.iter().filter_map(|k| k.as_str().map(String::from)).collect();
            st.allowed = (!kinds.is_empty()).then_some(kinds);
        }
    }
    loop {
        let notified = inner.updates_arrived.notified();
        let batch: Vec<Value> = {
            let st = inner.lock();
            st.queue.iter().filter(|u| st.wants(u)).take(limit).map(|u| u.body.clone()).collect()
        };
        if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(batch.into());
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

fn chat_id(st: &St, p: &Params) -> Result<i64, ApiErr> {
    if !p.contains_key("chat_id") {
        return Err(bad("chat_id is empty"));
    }
    int(p, "chat_id").filter(|id| !st.missing.contains(id)).ok_or_else(|| bad("chat not found"))
}

fn checked_text(p: &Params, too_long: &str) -> Result<String, ApiErr> {
    let text = string(p, "text").unwrap_or_default();
    if text.trim().is_empty() {
        return Err(bad("message text is empty"));
    }
    if text.encode_utf16().count() > MAX_TEXT_UTF16 {
        return Err(bad(too_long));
    }
    Ok(text)
}

async fn send_message(inner: &Inner, p: &Params) -> Reply {
    let at = Instant::now();
    let (msg, hold) = {
        let mut st = inner.lock();
        let chat_id = chat_id(&st, p)?;
        let text = checked_text(p, "message is too long")?;
        let reply_params = obj(p, "reply_parameters");
        let reply_to = reply_params.as_ref().and_then(|r| int_of(&r["message_id"])).or_else(|| int(p, "reply_to_message_id"));
        let lenient = reply_params.as_ref().is_some_and(|r| r["allow_sending_without_reply"] == json!(true));
        let replied = reply_to.and_then(|id| st.messages.get(&(chat_id, id)).cloned());
        if reply_to.is_some() && replied.is_none() && !lenient {
            return Err(bad("message to be replied not found"));
        }
        let reply_markup = obj(p, "reply_markup");
        let mut fields = json!({"text": text});
        if let Some(m) = &reply_markup {
            fields["reply_markup"] = m.clone();
        }
        if let Some(r) = replied {
            fields["reply_to_message"] = r;
        }
        let msg = st.new_message(chat_id, &bot_user(), fields);
        let message_id = msg["message_id"].as_i64().expect("message_id");
        let sent = Sent { chat_id, message_id, text, reply_markup, reply_to, parse_mode: string(p, "parse_mode"), at };
        st.sent.push(sent);
        (msg, st.hold_sends)
    };
    inner.sent_arrived.notify_waiters();
    if hold {
        // Accepted by the platform, but the client never learns it.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    Ok(msg)
}

fn edit_message_text(st: &mut St, p: &Params) -> Reply {
    let chat_id = chat_id(st, p)?;
    let message_id = int(p, "message_id").ok_or_else(|| bad("message identifier is not specified"))?;
    let text = checked_text(p, "MESSAGE_TOO_LONG")?;
    let reply_markup = obj(p, "reply_markup");
    let msg = st.messages.get_mut(&(chat_id, message_id)).ok_or_else(|| bad("message to edit not found"))?;
    if msg["from"]["id"] != json!(BOT_ID) {
        return Err(bad("message can't be edited"));
    }
    if msg["text"] == json!(text) && msg.get("reply_markup") == reply_markup.as_ref() {
        return Err(bad(
            "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        ));
    }
    msg["text"] = text.as_str().into();
    msg["edit_date"] = now().into();
    let fields = msg.as_object_mut().expect("message is an object");
    match &reply_markup {
        Some(m) => fields.insert("reply_markup".into(), m.clone()),
        None => fields.remove("reply_markup"),
    };
    let edited = msg.clone();
    st.edits.push(Edit { chat_id, message_id, text, reply_markup });
    Ok(edited)
}

fn answer_callback_query(st: &mut St, p: &Params) -> Reply {
    let id = string(p, "callback_query_id").unwrap_or_default();
    // A query can be answered once.
    if !st.open_queries.remove(&id) {
        return Err(bad("query is too old and response timeout expired or query ID is invalid"));
    }
    st.answers.push((id, string(p, "text")));
    Ok(json!(true))
}

fn set_my_commands(st: &mut St, p: &Params) -> Reply {
    let invalid = || bad("BOT_COMMAND_INVALID");
    let Some(Value::Array(list)) = obj(p, "commands") else { return Err(invalid()) };
    let mut commands = Vec::new();
    for c in list.iter().take(101) {
        let (Some(name), Some(desc)) = (c["command"].as_str(), c["description"].as_str()) else { return Err(invalid()) };
        let name_ok = (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok || !(1..=256).contains(&desc.chars().count()) || commands.len() == 100 {
            return Err(invalid());
        }
        commands.push((name.to_string(), desc.to_string()));
    }
    st.commands = Some(commands);
    Ok(json!(true))
}

fn get_file(st: &St, p: &Params) -> Reply {
    let id = string(p, "file_id").unwrap_or_default();
    let f = st.files.iter().find(|f| f.id == id).ok_or_else(|| bad("invalid file id"))?;
    if f.bytes.len() > MAX_DOWNLOAD && !st.big_files {
        return Err(bad("file is too big"));
    }
    Ok(json!({"file_id": f.id, "file_unique_id": f.unique_id, "file_size": f.bytes.len(), "file_path": f.path}))
}

/// `GET /file/bot{TOKEN}/{path}`; teloxide sends the path as one segment
/// (`documents%2Ffile_1.pdf`), so it is percent-decoded.
fn download(inner: &Inner, rest: &str) -> Response {
    let mut st = inner.lock();
    let file = rest
        .split_once('/')
        .filter(|(bot, _)| percent_decode(bot.strip_prefix("bot").unwrap_or_default()) == inner.token)
        .and_then(|(_, path)| st.files.iter().find(|f| f.path == percent_decode(path)))
        .map(|f| f.bytes.clone());
    match file {
        Some(bytes) => {
            st.downloads += 1;
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        None => api_err(404, "Not Found").into_response(),
    }
}

fn params(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Params {
    let mut p = form(uri.query().unwrap_or(""));
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ctype.starts_with("application/json") {
        if let Ok(Value::Object(m)) = serde_json::from_slice(body) {
            p.extend(m);
        }
    } else if ctype.starts_with("application/x-www-form-urlencoded") {
        p.extend(form(&String::from_utf8_lossy(body)));
    }
    p
}

fn form(query: &str) -> Params {
    let url = reqwest::Url::parse(&format!("http://fake/?{query}"));
    url.map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect()).unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        let escaped = s.get(i + 1..i + 3).filter(|_| b[i] == b'%').and_then(|h| u8::from_str_radix(h, 16).ok());
        out.push(escaped.unwrap_or(b[i]));
        i += if escaped.is_some() { 3 } else { 1 };
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An integer parameter, given as a JSON number or a decimal string (forms).
fn int(p: &Params, key: &str) -> Option<i64> {
    p.get(key).and_then(int_of)
}

fn int_of(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn string(p: &Params, key: &str) -> Option<String> {
    p.get(key).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

/// An object/array parameter, given as JSON or as a JSON-serialized string (forms).
fn obj(p: &Params, key: &str) -> Option<Value> {
    match p.get(key)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        v @ (Value::Object(_) | Value::Array(_)) => Some(v.clone()),
        _ => None,
    }
}
