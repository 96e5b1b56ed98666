//! A fake Telegram Bot API on 127.0.0.1:0, faithful to what `teloxide` sends
//! and parses: `POST /bot{TOKEN}/{Method}` (method names case-insensitive) with
//! JSON, form or query parameters; the `{"ok":..}` envelope with the HTTP status
//! equal to `error_code`; an update queue with Telegram's offset semantics and
//! long polling; downloads at `/file/bot{TOKEN}/{path}`; injected faults.
//! Invariants: an update below the highest offset seen is gone for good; a
//! call that fails records nothing; all state outlives client restarts.

// Explicit paths: `benches/bench.rs` includes this file with `#[path]`, which
// makes rustc look for child modules next to it rather than in `telegram/`.
#[path = "telegram/methods.rs"]
mod methods;
#[cfg(test)]
#[path = "telegram/self_check.rs"]
mod self_check;
#[path = "telegram/state.rs"]
mod state;

use axum::Router;
use methods::handle;
use serde::Serialize;
use serde_json::{Value, json};
use state::{Inner, entities, now, with_caption};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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

    /// Like [`FakeTelegram::push_document`], with `file_size` declared as
    /// `declared` whatever the file holds (a platform not to be trusted).
    #[expect(clippy::too_many_arguments, reason = "push_document's arguments and the lie")]
    pub fn push_document_declaring(
        &self,
        chat: Chat,
        from: User,
        file_name: &str,
        mime: &str,
        bytes: Vec<u8>,
        declared: u64,
        caption: Option<&str>,
    ) -> i64 {
        let mut doc = self.inner.lock().add_file("BQACAgIAAxk", "documents/file_{n}.bin", bytes);
        (doc["file_name"], doc["mime_type"], doc["file_size"]) = (file_name.into(), mime.into(), declared.into());
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

    /// While on, files over Telegram's 20 MB download limit are served, as a
    /// local Bot API server (`--local`) does.
    pub fn serve_big_files(&self, on: bool) {
        self.inner.lock().big_files = on;
    }

    /// File downloads answered so far (`GET /file/bot<token>/<path>`).
    pub fn downloads(&self) -> usize {
        self.inner.lock().downloads
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
