//! A fake Telegram Bot API on 127.0.0.1:0, faithful to what `teloxide` sends
//! and parses: `POST /bot{TOKEN}/{Method}` (method names case-insensitive) with
//! JSON, form or query parameters; the `{"ok":..}` envelope with the HTTP status
//! equal to `error_code`; an update queue with Telegram's offset semantics and
//! long polling; downloads at `/file/bot{TOKEN}/{path}`; injected faults.
//! Invariants: an update below the highest offset seen is gone for good; a
//! call that fails records nothing; all state outlives client restarts.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// The bot's user id, as `getMe` reports it.
pub const BOT_ID: i64 = 777000;
/// The bot's username, without `@`.
pub const BOT_USERNAME: &str = "agent_test_bot";
const FIRST_UPDATE_ID: i64 = 1000;
const MAX_TEXT_UTF16: usize = 4096;
const MAX_DOWNLOAD: usize = 20 * 1024 * 1024;
/// Kinds Telegram leaves out unless `allowed_updates` names them.
const OPT_IN_KINDS: [&str; 3] = ["chat_member", "message_reaction", "message_reaction_count"];

/// A chat as Telegram describes it (serializes as its `Chat` object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chat {
    /// Chat id (negative for groups).
    pub id: i64,
    /// `private`, `group` or `supergroup`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Title of a group chat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl Chat {
    /// A one-to-one chat with the user of the same id.
    pub fn private(id: i64) -> Chat {
        Chat { id, kind: "private", title: None }
    }
    /// A basic group.
    pub fn group(id: i64, title: &str) -> Chat {
        Chat { id, kind: "group", title: Some(title.into()) }
    }
    /// A supergroup.
    pub fn supergroup(id: i64, title: &str) -> Chat {
        Chat { id, kind: "supergroup", title: Some(title.into()) }
    }
}

/// A Telegram user (serializes as its `User` object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    /// User id.
    pub id: i64,
    /// First name.
    pub first_name: String,
    /// Username, without `@`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Whether the user is a bot.
    pub is_bot: bool,
}

impl User {
    /// A human without a username.
    pub fn new(id: i64, name: &str) -> User {
        User { id, first_name: name.into(), username: None, is_bot: false }
    }
}

fn bot_user() -> User {
    User { id: BOT_ID, first_name: "Agent".into(), username: Some(BOT_USERNAME.into()), is_bot: true }
}

/// How an injected failure answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after`.
    RetryAfter(u32),
    /// 409: another `getUpdates` poller took over.
    Conflict,
    /// 400 `Bad Request: chat not found`.
    ChatNotFound,
    /// 403 `Forbidden: bot was blocked by the user`.
    Blocked,
    /// This status and description.
    Status(u16, String),
}

/// A message the bot sent (recorded once Telegram accepted it).
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// Target chat.
    pub chat_id: i64,
    /// The id Telegram gave it.
    pub message_id: i64,
    /// The text as sent (markup included).
    pub text: String,
    /// `reply_markup` as sent.
    pub reply_markup: Option<Value>,
    /// The message it replies to.
    pub reply_to: Option<i64>,
    /// `parse_mode` as sent.
    pub parse_mode: Option<String>,
    /// When the `sendMessage` request arrived (for latency measurements).
    pub at: Instant,
}

/// An accepted `editMessageText`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// Chat of the message.
    pub chat_id: i64,
    /// The edited message.
    pub message_id: i64,
    /// The new text.
    pub text: String,
    /// The new `reply_markup`.
    pub reply_markup: Option<Value>,
}

struct FileEntry {
    id: String,
    unique_id: String,
    path: String,
    bytes: Vec<u8>,
}

struct Queued {
    id: i64,
    kind: String,
    /// `push_raw` updates skip `allowed_updates` filtering.
    raw: bool,
    body: Value,
}

#[derive(Default)]
struct St {
    issued: i64,
    queue: VecDeque<Queued>,
    confirmed: i64,
    allowed: Option<Vec<String>>,
    chats: HashMap<i64, Chat>,
    missing: HashSet<i64>,
    last_message_id: HashMap<i64, i64>,
    messages: HashMap<(i64, i64), Value>,
    files: Vec<FileEntry>,
    open_queries: HashSet<String>,
    serial: u64,
    sent: Vec<Sent>,
    edits: Vec<Edit>,
    answers: Vec<(String, Option<String>)>,
    commands: Option<Vec<(String, String)>>,
    calls: HashMap<String, usize>,
    /// Per method, what each coming call does (`None`: answers normally).
    faults: HashMap<String, VecDeque<Option<Fault>>>,
    conflict: bool,
    hold_sends: bool,
    poll_log: Vec<(Instant, Option<i64>, u16)>,
}

struct Inner {
    token: String,
    st: Mutex<St>,
    updates_arrived: Notify,
    sent_arrived: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().expect("fake telegram state")
    }
}

/// The running fake.
#[derive(Clone)]
pub struct FakeTelegram {
    inner: Arc<Inner>,
    base_url: String,
}

impl FakeTelegram {
    /// Starts the server on 127.0.0.1:0 in the current runtime, for `token`.
    pub async fn start(token: &str) -> FakeTelegram {
        let inner =
            Arc::new(Inner { token: token.into(), st: Mutex::default(), updates_arrived: Notify::new(), sent_arrived: Notify::new() });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake telegram");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTelegram { inner, base_url: format!("http://{addr}") }
    }

    /// `http://127.0.0.1:PORT`, for `Bot::set_api_url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Queues a text message from `from` in `chat` (with `bot_command` and
    /// `mention` entities as Telegram computes them); returns its update_id.
    pub fn push_message(&self, chat: Chat, from: User, text: &str) -> i64 {
        let mut fields = json!({"text": text});
        let ents = entities(text);
        if !ents.is_empty() {
            fields["entities"] = ents.into();
        }
        self.push_incoming(chat, from, fields)
    }

    /// Queues a document message; the file is then served by `getFile`.
    pub fn push_document(&self, chat: Chat, from: User, file_name: &str, mime: &str, bytes: Vec<u8>, caption: Option<&str>) -> i64 {
        let ext = file_name.rsplit_once('.').map_or("bin", |(_, e)| e);
        let mut doc = self.inner.lock().add_file("BQACAgIAAxk", &format!("documents/file_{{n}}.{ext}"), bytes);
        doc["file_name"] = file_name.into();
        doc["mime_type"] = mime.into();
        self.push_incoming(chat, from, with_caption(json!({"document": doc}), caption))
    }

    /// Queues a photo message with two sizes; the largest is `bytes`.
    pub fn push_photo(&self, chat: Chat, from: User, bytes: Vec<u8>, caption: Option<&str>) -> i64 {
        let thumb = bytes[..bytes.len().min(32)].to_vec();
        let mut st = self.inner.lock();
        let mut small = st.add_file("AgACAgIAAxk", "photos/file_{n}.jpg", thumb);
        let mut large = st.add_file("AgACAgIAAxk", "photos/file_{n}.jpg", bytes);
        drop(st);
        (small["width"], small["height"]) = (json!(90), json!(67));
        (large["width"], large["height"]) = (json!(1280), json!(960));
        self.push_incoming(chat, from, with_caption(json!({"photo": [small, large]}), caption))
    }

    /// Queues a button press on `message_id`; returns (update_id, callback_query_id).
    pub fn push_callback(&self, chat: Chat, from: User, message_id: i64, data: &str) -> (i64, String) {
        let mut st = self.inner.lock();
        st.serial += 1;
        let query_id = format!("{}", 4_300_000_000_000_000_000u64 + st.serial);
        st.open_queries.insert(query_id.clone());
        let message = st
            .messages
            .get(&(chat.id, message_id))
            .cloned()
            .unwrap_or_else(|| json!({"message_id": message_id, "from": bot_user(), "chat": chat, "date": now(), "text": ""}));
        let query = json!({"id": query_id, "from": from, "message": message, "chat_instance": format!("ci{}", chat.id), "data": data});
        let id = st.enqueue("callback_query", json!({"callback_query": query}), false);
        drop(st);
        self.inner.updates_arrived.notify_waiters();
        (id, query_id)
    }

    /// Queues `update` as given (with the next `update_id` set), delivered
    /// whatever `allowed_updates` says.
    pub fn push_raw(&self, update: Value) -> i64 {
        let kind = update.as_object().and_then(|m| m.keys().find(|k| *k != "update_id").cloned()).unwrap_or_default();
        let id = self.inner.lock().enqueue(&kind, update, true);
        self.inner.updates_arrived.notify_waiters();
        id
    }

    fn push_incoming(&self, chat: Chat, from: User, fields: Value) -> i64 {
        let mut st = self.inner.lock();
        st.chats.insert(chat.id, chat.clone());
        let msg = st.new_message(chat.id, &from, fields);
        let id = st.enqueue("message", json!({"message": msg}), false);
        drop(st);
        self.inner.updates_arrived.notify_waiters();
        id
    }

    /// The next `n` calls of `method` fail with `fault` (after any faults
    /// already scheduled for it).
    pub fn fail_next(&self, method: &str, n: usize, fault: Fault) {
        let mut st = self.inner.lock();
        st.faults.entry(method.to_ascii_lowercase()).or_default().extend(std::iter::repeat_n(Some(fault), n));
    }

    /// Only the `n`th coming call of `method` (1-based) fails with `fault`.
    pub fn fail_nth(&self, method: &str, n: usize, fault: Fault) {
        let mut st = self.inner.lock();
        let (plan, n) = (st.faults.entry(method.to_ascii_lowercase()).or_default(), n.max(1));
        if plan.len() < n {
            plan.resize(n, None);
        }
        plan[n - 1] = Some(fault);
    }

    /// Drops every scheduled fault (`set_conflict` and `hold_sends` stay).
    pub fn clear_faults(&self) {
        self.inner.lock().faults.clear();
    }

    /// While on, every `getUpdates` answers 409 at once (another poller).
    pub fn set_conflict(&self, on: bool) {
        self.inner.lock().conflict = on;
    }

    /// While on, `sendMessage` records the message and never answers.
    pub fn hold_sends(&self, on: bool) {
        self.inner.lock().hold_sends = on;
    }

    /// Sends to `chat_id` fail with 400 `chat not found` from now on.
    pub fn mark_missing(&self, chat_id: i64) {
        self.inner.lock().missing.insert(chat_id);
    }

    /// Every accepted `sendMessage`.
    pub fn sent(&self) -> Vec<Sent> {
        self.inner.lock().sent.clone()
    }

    /// How many `sendMessage`s were accepted (without copying them).
    pub fn sent_count(&self) -> usize {
        self.inner.lock().sent.len()
    }

    /// Accepted `sendMessage`s to one chat.
    pub fn sent_to(&self, chat_id: i64) -> Vec<Sent> {
        self.sent().into_iter().filter(|s| s.chat_id == chat_id).collect()
    }

    /// Every accepted `editMessageText`.
    pub fn edits(&self) -> Vec<Edit> {
        self.inner.lock().edits.clone()
    }

    /// Every accepted `answerCallbackQuery`: (query id, text).
    pub fn callback_answers(&self) -> Vec<(String, Option<String>)> {
        self.inner.lock().answers.clone()
    }

    /// The last accepted `setMyCommands` list: (command, description).
    pub fn commands(&self) -> Option<Vec<(String, String)>> {
        self.inner.lock().commands.clone()
    }

    /// Calls of `method` with the right token (failed ones included).
    pub fn calls(&self, method: &str) -> usize {
        self.inner.lock().calls.get(&method.to_ascii_lowercase()).copied().unwrap_or(0)
    }

    /// Every answered `getUpdates`: (arrival, offset, HTTP status), in answer order.
    pub fn get_updates_log(&self) -> Vec<(Instant, Option<i64>, u16)> {
        self.inner.lock().poll_log.clone()
    }

    /// The highest offset seen: updates below it are acknowledged.
    pub fn confirmed_offset(&self) -> i64 {
        self.inner.lock().confirmed
    }

    /// Updates not yet acknowledged.
    pub fn pending_updates(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Waits until at least `n` messages were sent (panics after `timeout`).
    pub async fn wait_sent(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.sent_arrived.notified();
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("fake Telegram: waited {timeout:?} for {n} sent message(s), got {}: {sent:?}", self.sent().len());
            }
        }
    }
}

impl St {
    fn enqueue(&mut self, kind: &str, mut body: Value, raw: bool) -> i64 {
        let id = FIRST_UPDATE_ID + self.issued;
        self.issued += 1;
        body["update_id"] = id.into();
        self.queue.push_back(Queued { id, kind: kind.into(), raw, body });
        id
    }

    fn wants(&self, u: &Queued) -> bool {
        u.raw
            || match &self.allowed {
                Some(list) => list.contains(&u.kind),
                None => !OPT_IN_KINDS.contains(&u.kind.as_str()),
            }
    }

    /// A new message in `chat_id` from `from` (the chat is created if unknown).
    fn new_message(&mut self, chat_id: i64, from: &User, fields: Value) -> Value {
        let chat =
            self.chats.entry(chat_id).or_insert_with(|| if chat_id < 0 { Chat::group(chat_id, "Group") } else { Chat::private(chat_id) });
        let mut msg = json!({"from": from, "chat": chat, "date": now()});
        let id = self.last_message_id.entry(chat_id).or_default();
        *id += 1;
        msg["message_id"] = (*id).into();
        msg.as_object_mut().expect("object").extend(fields.as_object().cloned().unwrap_or_default());
        self.messages.insert((chat_id, *id), msg.clone());
        msg
    }

    /// Registers a file; `{n}` in `path` becomes its serial. Returns its `FileMeta` JSON.
    fn add_file(&mut self, id_prefix: &str, path: &str, bytes: Vec<u8>) -> Value {
        self.serial += 1;
        let n = self.serial;
        let f = FileEntry {
            id: format!("{id_prefix}{n:06}"),
            unique_id: format!("AgAD{n:04}"),
            path: path.replace("{n}", &n.to_string()),
            bytes,
        };
        let meta = json!({"file_id": f.id, "file_unique_id": f.unique_id, "file_size": f.bytes.len()});
        self.files.push(f);
        meta
    }
}

fn with_caption(mut fields: Value, caption: Option<&str>) -> Value {
    if let Some(c) = caption {
        fields["caption"] = c.into();
        let ents = entities(c);
        if !ents.is_empty() {
            fields["caption_entities"] = ents.into();
        }
    }
    fields
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs() as i64)
}

/// `bot_command` for a leading `/word[@bot]` and `mention` for `@username`,
/// with offsets and lengths in UTF-16 code units as Telegram counts them.
fn entities(text: &str) -> Vec<Value> {
    let utf16 = |byte: usize| text[..byte].encode_utf16().count();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut command_end = 0;
    if let Some(rest) = text.strip_prefix('/') {
        let len = rest.bytes().take_while(|b| word(*b) || *b == b'@').count();
        if len > 0 {
            command_end = 1 + len;
            out.push(json!({"type": "bot_command", "offset": 0, "length": command_end}));
        }
    }
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('@') {
        let len = bytes[i + 1..].iter().take_while(|b| word(**b)).count();
        if i >= command_end && (i == 0 || !word(bytes[i - 1])) && (5..=32).contains(&len) {
            out.push(json!({"type": "mention", "offset": utf16(i), "length": len + 1}));
        }
    }
    out
}

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

async fn handle(State(inner): State<Arc<Inner>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
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
    if f.bytes.len() > MAX_DOWNLOAD {
        return Err(bad("file is too big"));
    }
    Ok(json!({"file_id": f.id, "file_unique_id": f.unique_id, "file_size": f.bytes.len(), "file_path": f.path}))
}

/// `GET /file/bot{TOKEN}/{path}`; teloxide sends the path as one segment
/// (`documents%2Ffile_1.pdf`), so it is percent-decoded.
fn download(inner: &Inner, rest: &str) -> Response {
    let st = inner.lock();
    let file = rest
        .split_once('/')
        .filter(|(bot, _)| percent_decode(bot.strip_prefix("bot").unwrap_or_default()) == inner.token)
        .and_then(|(_, path)| st.files.iter().find(|f| f.path == percent_decode(path)));
    match file {
        Some(f) => ([(header::CONTENT_TYPE, "application/octet-stream")], f.bytes.clone()).into_response(),
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

#[cfg(test)]
mod self_check {
    use super::*;
    use teloxide::net::Download;
    use teloxide::prelude::*;
    use teloxide::requests::Requester;
    use teloxide::types::{BotCommand, CallbackQueryId, MessageId, UpdateKind};
    use teloxide::{ApiError, RequestError};

    const TOKEN: &str = "123456:TEST-token";

    async fn post(fake: &FakeTelegram, method: &str, body: Value) -> (u16, Value) {
        let url = format!("{}/bot{TOKEN}/{method}", fake.base_url());
        let resp = reqwest::Client::new().post(url).json(&body).send().await.expect("post");
        (resp.status().as_u16(), resp.json().await.expect("json body"))
    }

    #[tokio::test]
    async fn raw_http_follows_the_bot_api() {
        let fake = FakeTelegram::start(TOKEN).await;
        let http = reqwest::Client::new();
        let (status, me) = post(&fake, "getme", json!({})).await;
        assert_eq!(
            (status, me["result"]["username"].as_str(), me["result"]["has_main_web_app"].as_bool()),
            (200, Some(BOT_USERNAME), Some(false))
        );
        let wrong = http.post(format!("{}/botnope/getMe", fake.base_url())).send().await.expect("post");
        assert_eq!(wrong.status().as_u16(), 401);
        assert_eq!(
            post(&fake, "noSuchMethod", json!({})).await,
            (404, json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"}))
        );

        let ann = User::new(5, "Ann");
        let first = fake.push_message(Chat::private(5), ann.clone(), "/start@agent_test_bot hi 👋 @agent_test_bot");
        fake.push_message(Chat::group(-7, "Team"), ann.clone(), "plain");
        // Form-encoded body, no offset: everything pending.
        let form =
            http.post(format!("{}/bot{TOKEN}/GetUpdates", fake.base_url())).header("content-type", "application/x-www-form-urlencoded");
        let all: Value = form.body("limit=10").send().await.expect("post").json().await.expect("json");
        let all = all["result"].as_array().expect("updates").clone();
        assert_eq!(all.iter().map(|u| u["update_id"].as_i64()).collect::<Vec<_>>(), [Some(1000), Some(1001)]);
        assert_eq!(first, 1000);
        assert_eq!(
            all[0]["message"]["entities"],
            json!([{"type": "bot_command", "offset": 0, "length": 21}, {"type": "mention", "offset": 28, "length": 15}])
        );
        assert_eq!((all[1]["message"]["message_id"].as_i64(), all[1]["message"]["chat"]["type"].as_str()), (Some(1), Some("group")));
        // Query string: offset 1001 confirms 1000 for good.
        let q: Value = http
            .get(format!("{}/bot{TOKEN}/getUpdates?offset=1001", fake.base_url()))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(q["result"].as_array().map(Vec::len), Some(1));
        let (_, again) = post(&fake, "getUpdates", json!({"offset": 1000})).await;
        assert_eq!(again["result"][0]["update_id"], json!(1001));
        assert_eq!((fake.confirmed_offset(), fake.pending_updates()), (1001, 1));

        // Long poll: held until an update arrives (two pollers both served), or `timeout` passes.
        let pusher = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            pusher.push_message(Chat::private(5), User::new(5, "Ann"), "late");
        });
        let t0 = Instant::now();
        let poll = || post(&fake, "getUpdates", json!({"offset": 1002, "timeout": 5}));
        let ((_, late), (_, late2)) = tokio::join!(poll(), poll());
        assert_eq!((&late["result"][0]["message"]["text"], late == late2), (&json!("late"), true));
        assert!(t0.elapsed() >= Duration::from_millis(100) && t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let t0 = Instant::now();
        assert_eq!(post(&fake, "getUpdates", json!({"offset": 1003, "timeout": 1})).await, (200, json!({"ok": true, "result": []})));
        assert!(t0.elapsed() >= Duration::from_millis(950), "{:?}", t0.elapsed());
        let statuses: Vec<_> = fake.get_updates_log().iter().map(|(_, o, s)| (*o, *s)).collect();
        assert_eq!(statuses, [(None, 200), (Some(1001), 200), (Some(1000), 200), (Some(1002), 200), (Some(1002), 200), (Some(1003), 200)]);

        // Limits count UTF-16 code units; failures record nothing.
        let (status, e) = post(&fake, "sendMessage", json!({"chat_id": 5, "text": "😀".repeat(2049)})).await;
        assert_eq!((status, e["description"].as_str()), (400, Some("Bad Request: message is too long")));
        assert_eq!(post(&fake, "sendMessage", json!({"chat_id": 5, "text": " "})).await.0, 400);
        fake.fail_next("SendMessage", 1, Fault::RetryAfter(3));
        fake.fail_next("sendmessage", 1, Fault::Status(502, "Bad Gateway".into()));
        let (status, e) = post(&fake, "sendMessage", json!({"chat_id": 5, "text": "x"})).await;
        assert_eq!(
            (status, &e["parameters"], &e["description"]),
            (429, &json!({"retry_after": 3}), &json!("Too Many Requests: retry after 3"))
        );
        assert_eq!(post(&fake, "sendMessage", json!({"chat_id": 5, "text": "x"})).await.0, 502);
        assert!(fake.sent().is_empty());
        let (status, ok) =
            post(&fake, "sendMessage", json!({"chat_id": "5", "text": "😀".repeat(2048), "reply_parameters": {"message_id": 1}})).await;
        assert_eq!(
            (status, ok["result"]["message_id"].as_i64(), ok["result"]["reply_to_message"]["text"].as_str()),
            (200, Some(3), Some("/start@agent_test_bot hi 👋 @agent_test_bot"))
        );
        assert_eq!((fake.sent_to(5).len(), fake.sent_to(5)[0].reply_to, fake.calls("SENDMESSAGE")), (1, Some(1), 5));

        // Files: getFile, then download by path (plain or with an encoded slash).
        fake.push_document(Chat::private(5), ann.clone(), "a.pdf", "application/pdf", b"%PDF-1".to_vec(), None);
        let (_, ups) = post(&fake, "getUpdates", json!({"offset": 1003})).await;
        let file_id = ups["result"][0]["message"]["document"]["file_id"].clone();
        let (_, file) = post(&fake, "getFile", json!({"file_id": file_id})).await;
        let path = file["result"]["file_path"].as_str().expect("file_path");
        for p in [path.to_string(), path.replace('/', "%2F")] {
            let got = http.get(format!("{}/file/bot{TOKEN}/{p}", fake.base_url())).send().await.expect("download");
            assert_eq!(got.bytes().await.expect("bytes").as_ref(), b"%PDF-1");
        }
        let missing = http.get(format!("{}/file/bot{TOKEN}/documents/nope", fake.base_url())).send().await.expect("download");
        assert_eq!(missing.status().as_u16(), 404);

        // Held sends: recorded, never answered.
        fake.hold_sends(true);
        let held = http.post(format!("{}/bot{TOKEN}/sendMessage", fake.base_url())).json(&json!({"chat_id": 9, "text": "lost"}));
        assert!(held.timeout(Duration::from_millis(200)).send().await.is_err());
        assert_eq!(fake.sent_to(9)[0].text, "lost");
    }

    #[tokio::test]
    async fn teloxide_round_trips() {
        let fake = FakeTelegram::start(TOKEN).await;
        let bot = Bot::new(TOKEN).set_api_url(fake.base_url().parse().expect("url"));
        let me = bot.get_me().await.expect("getMe");
        assert_eq!((me.username(), me.id), (BOT_USERNAME, UserId(777000)));
        let m = bot.send_message(ChatId(5), "hi").await.expect("sendMessage");
        assert_eq!((m.text(), m.id, m.from.as_ref().map(|u| u.is_bot)), (Some("hi"), MessageId(1), Some(true)));
        assert_eq!(fake.wait_sent(1, Duration::from_secs(2)).await[0].chat_id, 5);

        let ann = User::new(5, "Ann");
        let first = fake.push_message(Chat::group(-100, "Team"), ann.clone(), "/help");
        fake.push_document(Chat::private(5), ann.clone(), "notes.txt", "text/plain", b"hello file".to_vec(), Some("see"));
        fake.push_photo(Chat::private(5), ann.clone(), vec![7u8; 100], None);
        let (_, query_id) = fake.push_callback(Chat::private(5), ann.clone(), 1, "approve:1");
        let raw = fake.push_raw(json!({"brand_new_kind": {"x": 1}}));
        let ups = bot.get_updates().offset(first as i32).timeout(1).await.expect("getUpdates");
        assert_eq!(ups.len(), 5);
        let msg = |i: usize| match &ups[i].kind {
            UpdateKind::Message(m) => m.clone(),
            other => panic!("update {i} is not a message: {other:?}"),
        };
        assert_eq!((msg(0).text(), msg(0).chat.title()), (Some("/help"), Some("Team")));
        let doc = msg(1).document().expect("document").clone();
        assert_eq!((doc.file_name.as_deref(), msg(1).caption()), (Some("notes.txt"), Some("see")));
        let photo = msg(2).photo().expect("photo").to_vec();
        assert_eq!((photo.len(), photo[1].file.size), (2, 100));
        match &ups[3].kind {
            UpdateKind::CallbackQuery(q) => {
                assert_eq!((q.data.as_deref(), q.regular_message().and_then(|m| m.text())), (Some("approve:1"), Some("hi")))
            }
            other => panic!("not a callback query: {other:?}"),
        }
        assert!(matches!(&ups[4].kind, UpdateKind::Error(_)) && ups[4].id.0 as i64 == raw);

        let file = bot.get_file(doc.file.id).await.expect("getFile");
        let mut bytes = Vec::new();
        bot.download_file(&file.path, &mut bytes).await.expect("download");
        assert_eq!(bytes, b"hello file");

        let edited = bot.edit_message_text(ChatId(5), m.id, "hi, edited").await.expect("edit");
        assert_eq!((edited.text(), fake.edits().len()), (Some("hi, edited"), 1));
        let same = bot.edit_message_text(ChatId(5), m.id, "hi, edited").await;
        assert!(matches!(same, Err(RequestError::Api(ApiError::MessageNotModified))), "{same:?}");
        bot.answer_callback_query(CallbackQueryId(query_id.clone())).text("ok").await.expect("answer");
        assert!(bot.answer_callback_query(CallbackQueryId(query_id.clone())).await.is_err(), "a query is answered once");
        assert_eq!(fake.callback_answers(), [(query_id, Some("ok".to_string()))]);
        bot.set_my_commands([BotCommand::new("help", "Show help")]).await.expect("setMyCommands");
        assert!(bot.set_my_commands([BotCommand::new("Bad-Name", "x")]).await.is_err());
        assert_eq!(fake.commands(), Some(vec![("help".to_string(), "Show help".to_string())]));

        fake.fail_nth("sendMessage", 2, Fault::Blocked);
        fake.fail_nth("sendMessage", 1, Fault::RetryAfter(2));
        let r = bot.send_message(ChatId(5), "x").await;
        assert!(matches!(r, Err(RequestError::RetryAfter(s)) if s.seconds() == 2), "{r:?}");
        let r = bot.send_message(ChatId(5), "x").await;
        assert!(matches!(r, Err(RequestError::Api(ApiError::BotBlocked))), "{r:?}");
        fake.fail_nth("sendMessage", 2, Fault::ChatNotFound);
        fake.clear_faults();
        for _ in 0..2 {
            bot.send_message(ChatId(5), "after").await.expect("no fault left");
        }
        fake.set_conflict(true);
        let r = bot.get_updates().await;
        assert!(matches!(r, Err(RequestError::Api(ApiError::TerminatedByOtherGetUpdates))), "{r:?}");
        fake.set_conflict(false);
        let rest = bot.get_updates().offset(raw as i32 + 1).timeout(0).await.expect("getUpdates");
        assert!(rest.is_empty());
        assert_eq!((fake.confirmed_offset(), fake.pending_updates(), fake.sent().len()), (raw + 1, 0, 3));
    }
}
