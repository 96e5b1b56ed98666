//! Our own small Telegram Bot API client: the nine calls the connector
//! makes, over `reqwest` and JSON, reading only the fields we use.
//!
//! Invariants: the bot token is in request URLs and nowhere else — every
//! reqwest error is stripped of its URL ([`reqwest::Error::without_url`])
//! and then of any copy of the token before it becomes an [`Error`], and no
//! response body is ever quoted. Unknown fields are ignored (Telegram adds
//! fields all the time), and one update of an unexpected shape is skipped,
//! never the batch. The long poll has its own timeout (the poll plus
//! [`REQUEST_TIMEOUT`]), so the client's never cuts it.

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};
use std::time::Duration;

/// Connect timeout of every call (teloxide's `default_reqwest_settings`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout of every call but the long poll and downloads
/// (teloxide's `default_reqwest_settings`); also the long poll's margin.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(17);
/// A file download (at most 20 MB from Telegram's cloud; a local Bot API
/// server serves more) gets this long.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// What a `file_size` that Telegram left out counts as (teloxide's
/// fallback: such a file is refused on its size, never fetched).
const UNKNOWN_SIZE: u64 = u32::MAX as u64;

/// Why a Bot API call failed. Every message starts with `telegram:` and
/// never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 429 flood control (`parameters.retry_after`) → the outbox defers the
    /// message by that much without counting an attempt.
    #[error("telegram: 429 Too Many Requests (retry after {}s)", .0.as_secs())]
    RetryAfter(Duration),
    /// `parameters.migrate_to_chat_id`: the group is now a supergroup → permanent.
    #[error("telegram: the group became a supergroup with chat id {0}")]
    Migrated(i64),
    /// 409 "terminated by other getUpdates request": a second poller → the
    /// poller backs off and says so on the heartbeat.
    #[error("telegram: {0}")]
    Conflict(Refusal),
    /// 401 Unauthorized (or "Not Found"): the token is wrong → the poller
    /// backs off and says so on the heartbeat.
    #[error("telegram: {0}")]
    InvalidToken(Refusal),
    /// "message is not modified": the edit is already there → delivered.
    #[error("telegram: {0}")]
    NotModified(Refusal),
    /// "message to edit not found" / "message can't be edited" → the
    /// outcome is sent as a new message.
    #[error("telegram: {0}")]
    EditGone(Refusal),
    /// Any other refusal → permanent, unless it is a server's (a 5xx code, or
    /// a description like `Internal Server Error`, `Bad Gateway`) → transient.
    #[error("telegram: {0}")]
    Api(Refusal),
    /// A file download answered with this HTTP status (a 5xx is transient).
    #[error("telegram: HTTP {0}")]
    Status(reqwest::StatusCode),
    /// The request did not complete (connect, TLS, timeout, reset) → transient.
    /// Rendered at once, without the URL and its token.
    #[error("telegram: {0}")]
    Network(String),
    /// The answer was not the JSON we expect → transient. The body is not
    /// quoted (a proxy's error page may echo the URL).
    #[error("telegram: unexpected answer (HTTP {status}): {source}")]
    InvalidJson {
        /// The answer's HTTP status.
        status: u16,
        /// What did not parse.
        #[source]
        source: serde_json::Error,
    },
}

/// Telegram's refusal of a call: `error_code` and `description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {description}")]
pub struct Refusal {
    /// `error_code` (the HTTP status when Telegram leaves it out).
    pub code: u16,
    /// `description`, e.g. `Bad Request: chat not found`.
    pub description: String,
}

impl Error {
    /// Whether trying again later may work (network, bad JSON, a server's error).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Network(_) | Error::InvalidJson { .. } => true,
            // A 5xx by its code (`error_code`, else the HTTP status) or by its words.
            Error::Api(r) => r.code >= 500 || is_server_side(&r.description),
            Error::Status(s) => s.is_server_error(),
            _ => false,
        }
    }
}

/// 5xx descriptions (`Internal Server Error`, `Bad Gateway`, ...) are worth another try.
fn is_server_side(text: &str) -> bool {
    ["Internal Server Error", "Bad Gateway", "Service Unavailable", "Gateway Timeout", "Too Many Requests"].iter().any(|p| text.contains(p))
}

/// The `{"ok": .., "result": .., ...}` envelope of every answer.
#[derive(Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

/// `ResponseParameters`.
#[derive(Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

/// The bot, as `getMe` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    /// The bot's user id (a `text_mention` of the bot carries it).
    pub id: u64,
    /// Its handle, without `@` (every bot has one).
    pub username: String,
}

/// A Telegram user.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// User id.
    pub id: u64,
    /// Whether it is a bot (bots' messages are not for us).
    #[serde(default)]
    pub is_bot: bool,
    /// First name.
    #[serde(default)]
    pub first_name: String,
    /// Last name.
    pub last_name: Option<String>,
}

impl User {
    /// First and last name, as teloxide's `User::full_name`.
    pub fn full_name(&self) -> String {
        match &self.last_name {
            Some(last) => format!("{} {last}", self.first_name),
            None => self.first_name.clone(),
        }
    }
}

/// A chat.
#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    /// Chat id (negative for groups).
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A group's title.
    pub title: Option<String>,
}

impl Chat {
    /// A one-to-one chat with a user.
    pub fn is_private(&self) -> bool {
        self.kind == "private"
    }

    /// The title of a group, supergroup or channel.
    pub fn title(&self) -> Option<&str> {
        if self.is_private() { None } else { self.title.as_deref() }
    }
}

/// A `MessageEntity`: offsets and lengths in UTF-16 code units.
#[derive(Debug, Clone, Deserialize)]
pub struct Entity {
    /// `mention`, `text_mention`, `bot_command`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Start, in UTF-16 code units.
    pub offset: usize,
    /// Length, in UTF-16 code units.
    pub length: usize,
    /// The user a `text_mention` names.
    pub user: Option<User>,
}

/// A file's identity and declared size.
#[derive(Debug, Clone, Deserialize)]
pub struct FileMeta {
    /// For `getFile`.
    pub file_id: String,
    /// Stable across bots; names photos.
    pub file_unique_id: String,
    /// Declared size in bytes (a missing size counts as 4 GiB, as in teloxide).
    #[serde(default = "unknown_size")]
    pub file_size: u64,
}

fn unknown_size() -> u64 {
    UNKNOWN_SIZE
}

/// A document attachment.
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    /// The file.
    #[serde(flatten)]
    pub file: FileMeta,
    /// The sender's file name.
    pub file_name: Option<String>,
}

/// The message a message answers (only its sender matters).
#[derive(Debug, Clone, Deserialize)]
pub struct Replied {
    /// Who wrote it.
    pub from: Option<User>,
}

/// A chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// Id within the chat.
    pub message_id: i64,
    /// The sender (absent in channels).
    pub from: Option<User>,
    /// Where it was written.
    pub chat: Chat,
    /// A text message's text.
    pub text: Option<String>,
    /// Entities in `text`.
    #[serde(default)]
    pub entities: Vec<Entity>,
    /// A media message's caption.
    pub caption: Option<String>,
    /// Entities in `caption`.
    #[serde(default)]
    pub caption_entities: Vec<Entity>,
    /// A document.
    pub document: Option<Document>,
    /// A photo, in several sizes.
    #[serde(default)]
    pub photo: Vec<FileMeta>,
    /// The message this one answers.
    pub reply_to_message: Option<Box<Replied>>,
}

impl Message {
    /// The text of each entity in the text (or, without text, the caption)
    /// with its kind and user; entities whose UTF-16 range does not fall on
    /// character boundaries inside the text are left out.
    pub fn entities(&self) -> Vec<(&Entity, &str)> {
        let (text, entities) = match (&self.text, &self.caption) {
            (Some(t), _) => (t.as_str(), &self.entities),
            (None, Some(c)) => (c.as_str(), &self.caption_entities),
            (None, None) => return Vec::new(),
        };
        entities.iter().filter_map(|e| Some((e, utf16_slice(text, e.offset, e.length)?))).collect()
    }
}

/// `text[offset..offset + length]` in UTF-16 code units, or `None` when
/// that range is outside the text or splits a character.
pub fn utf16_slice(text: &str, offset: usize, length: usize) -> Option<&str> {
    let end = offset.checked_add(length)?;
    let (mut start_byte, mut end_byte, mut units) = (None, None, 0);
    for (byte, c) in text.char_indices().chain([(text.len(), '\0')]) {
        if units == offset {
            start_byte = Some(byte);
        }
        if units == end {
            end_byte = Some(byte);
            break;
        }
        units += c.len_utf16();
    }
    text.get(start_byte?..end_byte?)
}

/// The message that carried a pressed button: a full message, or an
/// inaccessible one (`chat`, `message_id` and `date` 0) — both have these.
#[derive(Debug, Clone, Deserialize)]
pub struct PressedMessage {
    /// Id within the chat.
    pub message_id: i64,
    /// Its chat.
    pub chat: Chat,
}

/// A press of an inline keyboard button.
#[derive(Debug, Clone, Deserialize)]
pub struct CallbackQuery {
    /// For `answerCallbackQuery`.
    pub id: String,
    /// Who pressed.
    pub from: User,
    /// The message with the button (absent for inline-mode messages).
    pub message: Option<PressedMessage>,
    /// The button's `callback_data`.
    pub data: Option<String>,
}

/// What an update carries.
#[derive(Debug)]
pub enum UpdateKind {
    /// A new message.
    Message(Box<Message>),
    /// A button press.
    CallbackQuery(Box<CallbackQuery>),
    /// Another kind (named by its key), or one that did not parse (logged):
    /// skipped, its id still confirmed.
    Other(String),
}

/// One update of a `getUpdates` batch.
#[derive(Debug)]
pub struct Update {
    /// `update_id`: the next poll's offset is the highest plus one.
    pub id: i64,
    /// Its content.
    pub kind: UpdateKind,
}

/// An update's content (its `update_id` is read before, from the raw value).
#[derive(Deserialize)]
struct RawUpdate {
    message: Option<Box<Message>>,
    callback_query: Option<Box<CallbackQuery>>,
}

/// Parses a batch one update at a time: one of an unexpected shape is
/// skipped with a warning (keeping its id, so the offset moves past it);
/// one without even an `update_id` is dropped.
fn parse_updates(values: Vec<Value>) -> Vec<Update> {
    let mut updates = Vec::with_capacity(values.len());
    for value in values {
        let key = value.as_object().and_then(|m| m.keys().find(|k| *k != "update_id").cloned()).unwrap_or_default();
        let Some(id) = value.get("update_id").and_then(Value::as_i64) else {
            tracing::warn!(kind = %key, "skipped a Telegram update without an update_id");
            continue;
        };
        let kind = match serde_json::from_value::<RawUpdate>(value) {
            Ok(RawUpdate { message: Some(m), .. }) => UpdateKind::Message(m),
            Ok(RawUpdate { callback_query: Some(q), .. }) => UpdateKind::CallbackQuery(q),
            Ok(_) => UpdateKind::Other(key),
            Err(e) => {
                tracing::warn!(update_id = id, kind = %key, error = %e, "skipped a Telegram update that did not parse");
                UpdateKind::Other(key)
            }
        };
        updates.push(Update { id, kind });
    }
    updates
}

/// A sent or edited message (only its id matters).
#[derive(Deserialize)]
struct Sent {
    message_id: i64,
}

/// `getFile`'s answer.
#[derive(Deserialize)]
struct File {
    file_path: String,
}

/// An inline keyboard button that sends `data` back when pressed.
pub struct Button<'a> {
    /// Its label.
    pub text: &'a str,
    /// Its `callback_data`.
    pub data: &'a str,
}

/// Renders a reqwest error without its URL, with its causes, and with any
/// copy of the token blanked (a second guard: no cause is known to hold one).
fn network(e: reqwest::Error, token: &str) -> Error {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    Error::Network(text.replace(token, "<token>"))
}

/// Reads an answer: `result` on `ok`, else the refusal.
fn decode<T: DeserializeOwned>(status: u16, body: &str) -> Result<T, Error> {
    let env: Envelope<T> = serde_json::from_str(body).map_err(|source| Error::InvalidJson { status, source })?;
    if env.ok {
        let missing = || Error::InvalidJson { status, source: serde::de::Error::missing_field("result") };
        return env.result.ok_or_else(missing);
    }
    if let Some(p) = &env.parameters {
        if let Some(secs) = p.retry_after {
            return Err(Error::RetryAfter(Duration::from_secs(secs)));
        }
        if let Some(id) = p.migrate_to_chat_id {
            return Err(Error::Migrated(id));
        }
    }
    let code = env.error_code.unwrap_or(status);
    let reason = || reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error").to_string();
    let refusal = Refusal { code, description: env.description.unwrap_or_else(reason) };
    let d = refusal.description.as_str();
    Err(if d.starts_with("Conflict: terminated by other getUpdates request") {
        Error::Conflict(refusal)
    } else if code == 401 || d == "Unauthorized" || d == "Not Found" {
        Error::InvalidToken(refusal)
    } else if d.starts_with("Bad Request: message is not modified") {
        Error::NotModified(refusal)
    } else if d.starts_with("Bad Request: message to edit not found") || d.starts_with("Bad Request: message can't be edited") {
        Error::EditGone(refusal)
    } else {
        Error::Api(refusal)
    })
}

/// A file being downloaded, read in chunks.
pub struct Download {
    response: reqwest::Response,
    token: String,
}

impl Download {
    /// The next chunk, `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<impl std::ops::Deref<Target = [u8]> + use<>>, Error> {
        self.response.chunk().await.map_err(|e| network(e, &self.token))
    }
}

/// A Bot API client for one bot token. The token is never printed (no `Debug`).
#[derive(Clone)]
pub struct Bot {
    client: reqwest::Client,
    base: reqwest::Url,
    token: String,
}

impl Bot {
    /// A client of the Bot API at `base` (`https://api.telegram.org`, a
    /// self-hosted `telegram-bot-api`, or a test server).
    pub fn new(base: &str, token: &str) -> Result<Self, String> {
        let base = reqwest::Url::parse(base).map_err(|e| format!("AGENT_RUNTIME_TELEGRAM_API_BASE: {e}"))?;
        if base.cannot_be_a_base() {
            return Err(format!("AGENT_RUNTIME_TELEGRAM_API_BASE: {base} cannot be a base URL"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("telegram HTTP client: {}", e.without_url()))?;
        Ok(Self { client, base, token: token.to_string() })
    }

    /// `{base}/{segments...}`, each segment percent-encoded as needed.
    fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call<T: DeserializeOwned>(&self, method: &str, body: Value, timeout: Option<Duration>) -> Result<T, Error> {
        let bot = format!("bot{}", self.token);
        let mut req = self.client.post(self.url([bot.as_str(), method])).json(&body);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| network(e, &self.token))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| network(e, &self.token))?;
        decode(status, &text)
    }

    /// `getMe`.
    pub async fn get_me(&self) -> Result<Me, Error> {
        self.call("getMe", json!({}), None).await
    }

    /// `getUpdates` from `offset`, waiting up to `timeout` for messages and
    /// button presses; the request may take `timeout` plus [`REQUEST_TIMEOUT`].
    pub async fn get_updates(&self, offset: i64, timeout: Duration) -> Result<Vec<Update>, Error> {
        let body = json!({"offset": offset, "timeout": timeout.as_secs(), "allowed_updates": ["message", "callback_query"]});
        let values: Vec<Value> = self.call("getUpdates", body, Some(timeout + REQUEST_TIMEOUT)).await?;
        Ok(parse_updates(values))
    }

    /// `sendMessage` of plain text, answering `reply_to` (sent anyway if it
    /// is gone), with one row of `buttons`; the new message's id.
    pub async fn send_message(&self, chat: i64, text: &str, reply_to: Option<i64>, buttons: &[Button<'_>]) -> Result<i64, Error> {
        let mut body = json!({"chat_id": chat, "text": text});
        if let Some(id) = reply_to {
            body["reply_parameters"] = json!({"message_id": id, "allow_sending_without_reply": true});
        }
        if !buttons.is_empty() {
            let row: Vec<Value> = buttons.iter().map(|b| json!({"text": b.text, "callback_data": b.data})).collect();
            body["reply_markup"] = json!({"inline_keyboard": [row]});
        }
        Ok(self.call::<Sent>("sendMessage", body, None).await?.message_id)
    }

    /// `editMessageText` without a keyboard (removing any); the message's id.
    pub async fn edit_message_text(&self, chat: i64, message_id: i64, text: &str) -> Result<i64, Error> {
        let body = json!({"chat_id": chat, "message_id": message_id, "text": text});
        Ok(self.call::<Sent>("editMessageText", body, None).await?.message_id)
    }

    /// `sendChatAction` `typing`.
    pub async fn send_typing(&self, chat: i64) -> Result<(), Error> {
        self.call::<IgnoredAny>("sendChatAction", json!({"chat_id": chat, "action": "typing"}), None).await.map(drop)
    }

    /// `setMyCommands` with (command, description) pairs.
    pub async fn set_my_commands(&self, commands: &[(String, String)]) -> Result<(), Error> {
        let list: Vec<Value> = commands.iter().map(|(c, d)| json!({"command": c, "description": d})).collect();
        self.call::<IgnoredAny>("setMyCommands", json!({"commands": list}), None).await.map(drop)
    }

    /// `answerCallbackQuery` without a text (stops the button's spinner).
    pub async fn answer_callback_query(&self, id: &str) -> Result<(), Error> {
        self.call::<IgnoredAny>("answerCallbackQuery", json!({"callback_query_id": id}), None).await.map(drop)
    }

    /// `getFile`, then `GET {base}/file/bot{token}/{file_path}`: the body,
    /// to be read in chunks.
    pub async fn download(&self, file_id: &str) -> Result<Download, Error> {
        let file: File = self.call("getFile", json!({"file_id": file_id}), None).await?;
        let bot = format!("bot{}", self.token);
        let url = self.url(["file", bot.as_str()].into_iter().chain(file.file_path.split('/')));
        let response = self.client.get(url).timeout(DOWNLOAD_TIMEOUT).send().await.map_err(|e| network(e, &self.token))?;
        if !response.status().is_success() {
            return Err(Error::Status(response.status()));
        }
        Ok(Download { response, token: self.token.clone() })
    }
}

#[cfg(test)]
mod tests;
