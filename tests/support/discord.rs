//! A fake Discord on 127.0.0.1:0: REST API v10 (JSON) plus the gateway v10
//! (JSON text frames, no compression), shaped to what serenity 0.12.5 sends
//! and deserializes. Point serenity at it with
//! `HttpBuilder::new(token).proxy(fake.base_url()).ratelimiter_disabled(true)`;
//! the client then finds the gateway through `GET /api/v10/gateway`.
//!
//! Invariants: every socket write goes through the connection's queue, so
//! frames leave in sequence order; a dispatch is sequenced only while a
//! session exists (live or resumable) and stays in that session's replay
//! buffer until a new IDENTIFY replaces the session. Messages pushed while no
//! session exists are only in the REST history. The fake outlives client
//! restarts: a restarted client IDENTIFYs and gets a new session.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message as WsMsg;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The bot's user id.
pub const BOT_ID: &str = "900000000000000001";
/// The bot's username.
pub const BOT_NAME: &str = "agent-test";
/// The bot's application id.
pub const APP_ID: &str = "900000000000000002";
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// The author of a pushed message or the user of a pushed interaction.
#[derive(Debug, Clone)]
pub struct Author {
    /// Snowflake user id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Whether the account is a bot (`author.bot`).
    pub bot: bool,
}

impl Author {
    /// A human user.
    pub fn user(id: &str, name: &str) -> Author {
        Author { id: id.into(), username: name.into(), bot: false }
    }

    /// Another bot.
    pub fn bot(id: &str, name: &str) -> Author {
        Author { id: id.into(), username: name.into(), bot: true }
    }

    fn json(&self) -> Value {
        json!({"id": self.id, "username": self.username, "discriminator": "0", "global_name": self.username,
               "avatar": null, "bot": self.bot})
    }
}

/// What `fail_next` makes a route answer instead of its normal reply.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with Discord's body (which has no `code`) and `Retry-After` /
    /// `X-RateLimit-*` headers.
    RateLimited {
        /// Seconds to wait (`retry_after`).
        retry_after_secs: f64,
        /// Whether this is the global limit.
        global: bool,
    },
    /// This status and JSON body.
    Status(u16, Value),
}

/// A message the client created (`POST channels/{id}/messages`, or an
/// interaction followup).
#[derive(Debug, Clone)]
pub struct Sent {
    /// The channel it went to.
    pub channel_id: String,
    /// The id the fake gave it.
    pub message_id: String,
    /// Its `content` ("" when absent).
    pub content: String,
    /// Its `components`, if sent.
    pub components: Option<Value>,
    /// `message_reference.message_id`, if it replies.
    pub reference: Option<String>,
    /// The interaction token, for a followup.
    pub interaction_token: Option<String>,
}

/// A message edit (`PATCH channels/{c}/messages/{m}` or `.../@original`).
#[derive(Debug, Clone)]
pub struct Edit {
    /// The channel of the edited message.
    pub channel_id: String,
    /// The edited message.
    pub message_id: String,
    /// The new `content`, if sent.
    pub content: Option<String>,
    /// The new `components`, if sent.
    pub components: Option<Value>,
    /// The interaction token, for an `@original` edit.
    pub interaction_token: Option<String>,
}

/// An accepted interaction callback (`POST interactions/{id}/{token}/callback`).
#[derive(Debug, Clone)]
pub struct InteractionResponse {
    /// The interaction answered.
    pub interaction_id: String,
    /// The callback `type` (4 message, 5 deferred, 6 deferred update, 7 update, 9 modal).
    pub kind: u8,
    /// The callback `data` (null when absent).
    pub data: Value,
}

/// What a socket task is told to do.
enum Cmd {
    Frame(String),
    Close(u16, &'static str),
    Drop,
}

type Tx = mpsc::UnboundedSender<Cmd>;

struct Pending {
    token: String,
    channel_id: String,
    message_id: Option<String>,
    answered: bool,
    original: Option<String>,
}

#[derive(Default)]
struct Gw {
    heartbeat_ms: u64,
    session: Option<String>,
    sessions: u64,
    seq: u64,
    replay: Vec<(u64, String)>,
    live: Option<(u64, Tx)>,
    conns: u64,
    ops: Vec<(u8, Value)>,
    identifies: usize,
    resumes: usize,
    intents: Option<u64>,
}

impl Gw {
    /// Sequences a dispatch and sends it if a socket is live; without a
    /// session nothing happens.
    fn dispatch(&mut self, t: &str, d: Value, replayable: bool) {
        if self.session.is_none() {
            return;
        }
        self.seq += 1;
        let frame = json!({"op": 0, "s": self.seq, "t": t, "d": d}).to_string();
        if replayable {
            self.replay.push((self.seq, frame.clone()));
        }
        if let Some((_, tx)) = &self.live {
            let _ = tx.send(Cmd::Frame(frame));
        }
    }

    fn is_live(&self, conn: u64) -> bool {
        self.live.as_ref().is_some_and(|(c, _)| *c == conn)
    }
}

#[derive(Default)]
struct Data {
    next_id: u64,
    channels: HashMap<String, Vec<Value>>,
    missing: HashSet<String>,
    files: HashMap<String, (String, Vec<u8>)>,
    interactions: HashMap<String, Pending>,
    sent: Vec<Sent>,
    edits: Vec<Edit>,
    responses: Vec<InteractionResponse>,
    commands: Vec<(Option<String>, Vec<Value>)>,
    calls: HashMap<String, usize>,
    faults: HashMap<String, VecDeque<Fault>>,
    log: Vec<(Instant, String, String, u16)>,
    gw: Gw,
}

impl Data {
    fn snowflake(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn find(&mut self, channel: &str, id: &str) -> Option<&mut Value> {
        self.channels.get_mut(channel)?.iter_mut().find(|m| m["id"] == id)
    }

    /// A new message object (plus the fields of `extra`) stored in `channel`'s history.
    fn store_message(&mut self, channel: &str, author: Value, content: &str, extra: Value) -> Value {
        let id = self.snowflake();
        let mention = content.contains(&format!("<@{BOT_ID}>")) || content.contains(&format!("<@!{BOT_ID}>"));
        let mut m = json!({"id": id, "channel_id": channel, "author": author, "content": content, "timestamp": now(),
            "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": if mention { vec![bot_user()] } else { vec![] },
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0, "flags": 0, "components": []});
        if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
            m.extend(extra);
        }
        self.channels.entry(channel.to_string()).or_default().push(m.clone());
        m
    }
}

struct Inner {
    token: String,
    base_url: String,
    gateway_url: String,
    data: Mutex<Data>,
    changed: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().expect("fake discord state")
    }

    /// Serenity sends `Bot <token>` in IDENTIFY and RESUME; a bare token is accepted too.
    fn token_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|t| t.strip_prefix("Bot ").unwrap_or(t) == self.token)
    }
}

/// Generates `pub fn name(&self) -> T` reading the state under the lock.
macro_rules! getters {
    ($($(#[$doc:meta])* $name:ident -> $ty:ty = |$d:ident| $e:expr;)*) => {
        $($(#[$doc])* pub fn $name(&self) -> $ty { let $d = self.inner.lock(); $e })*
    };
}

/// The running fake (cheap to clone).
#[derive(Clone)]
pub struct FakeDiscord {
    inner: Arc<Inner>,
}

impl FakeDiscord {
    /// Starts REST and gateway listeners on 127.0.0.1:0; `token` is the bot
    /// token, with or without the `Bot ` prefix.
    pub async fn start(token: &str) -> FakeDiscord {
        let rest = TcpListener::bind("127.0.0.1:0").await.expect("bind fake discord rest");
        let gw = TcpListener::bind("127.0.0.1:0").await.expect("bind fake discord gateway");
        let (rest_addr, gw_addr) = (rest.local_addr().expect("rest addr"), gw.local_addr().expect("gateway addr"));
        let now_ms = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis()).expect("ms fit");
        let gw_state = Gw { heartbeat_ms: 41_250, ..Gw::default() };
        let inner = Arc::new(Inner {
            token: token.strip_prefix("Bot ").unwrap_or(token).to_string(),
            base_url: format!("http://{rest_addr}"),
            gateway_url: format!("ws://{gw_addr}"),
            data: Mutex::new(Data { next_id: (now_ms - DISCORD_EPOCH_MS) << 22, gw: gw_state, ..Data::default() }),
            changed: Notify::new(),
        });
        let app = Router::new().fallback(rest_handler).with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(rest, app).await;
        });
        let acceptor = inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = gw.accept().await {
                tokio::spawn(serve_socket(acceptor.clone(), stream));
            }
        });
        FakeDiscord { inner }
    }

    /// `http://127.0.0.1:PORT`, for `HttpBuilder::proxy`.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// `ws://127.0.0.1:GWPORT`, as `GET /gateway` reports it.
    pub fn gateway_url(&self) -> String {
        self.inner.gateway_url.clone()
    }

    /// Makes every request about `channel_id` answer 404 Unknown Channel.
    pub fn missing_channel(&self, channel_id: &str) {
        self.inner.lock().missing.insert(channel_id.to_string());
    }

    /// Makes the next `n` requests of `route_kind` (see `calls`) answer `fault`.
    pub fn fail_next(&self, route_kind: &str, n: usize, fault: Fault) {
        self.inner.lock().faults.entry(route_kind.to_string()).or_default().extend(std::iter::repeat_n(fault, n));
    }

    /// The heartbeat interval sent in HELLO on later connections (default 41250).
    pub fn set_heartbeat_interval_ms(&self, ms: u64) {
        self.inner.lock().gw.heartbeat_ms = ms;
    }

    /// Stores a message in `channel_id`'s history and dispatches MESSAGE_CREATE
    /// (with `guild_id` and `member` in a guild) if a session exists; returns its id.
    pub fn push_message(&self, channel_id: &str, guild_id: Option<&str>, author: Author, content: &str) -> String {
        self.push(channel_id, guild_id, &author, content, None)
    }

    /// Like `push_message`, with one attachment whose `url` serves `bytes`
    /// (`{base_url}/attachments/{channel}/{id}/{file_name}`; use a URL-safe name).
    #[expect(clippy::too_many_arguments, reason = "the signature the tests were written against")]
    pub fn push_message_with_attachment(
        &self,
        channel_id: &str,
        guild_id: Option<&str>,
        author: Author,
        content: &str,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> String {
        self.push(channel_id, guild_id, &author, content, Some((file_name, content_type, bytes)))
    }

    fn push(&self, channel: &str, guild: Option<&str>, author: &Author, content: &str, file: Option<(&str, &str, &[u8])>) -> String {
        let mut d = self.inner.lock();
        let mut extra = json!({});
        if let Some((name, content_type, bytes)) = file {
            let att = d.snowflake();
            let path = format!("/attachments/{channel}/{att}/{name}");
            let url = format!("{}{path}", self.inner.base_url);
            extra["attachments"] = json!([{"id": att, "filename": name, "size": bytes.len(), "url": url, "proxy_url": url,
                                           "content_type": content_type}]);
            d.files.insert(path, (content_type.to_string(), bytes.to_vec()));
        }
        let mut m = d.store_message(channel, author.json(), content, extra);
        let id = m["id"].as_str().expect("message id is a string").to_string();
        if let Some(g) = guild {
            m["guild_id"] = json!(g);
            m["member"] = json!({"roles": [], "joined_at": now(), "deaf": false, "mute": false, "flags": 0});
        }
        d.gw.dispatch("MESSAGE_CREATE", m, true);
        drop(d);
        self.inner.changed.notify_waiters();
        id
    }

    /// Dispatches a slash command (INTERACTION_CREATE type 2). Option types
    /// follow the values: string 3, integer 4, bool 5, float 10. Returns
    /// (interaction id, token).
    pub fn push_interaction_command(
        &self,
        channel_id: &str,
        guild_id: Option<&str>,
        user: Author,
        name: &str,
        options: Vec<(String, Value)>,
    ) -> (String, String) {
        let mut d = self.inner.lock();
        let opts: Vec<Value> = options.into_iter().map(|(n, v)| json!({"name": n, "type": option_type(&v), "value": v})).collect();
        let data = json!({"id": d.snowflake(), "name": name, "type": 1, "options": opts});
        interaction(&mut d, 2, channel_id, guild_id, &user, data, None)
    }

    /// Dispatches a button click (INTERACTION_CREATE type 3) on the stored
    /// message `message_id`. Returns (interaction id, token).
    pub fn push_interaction_component(
        &self,
        channel_id: &str,
        guild_id: Option<&str>,
        user: Author,
        message_id: &str,
        custom_id: &str,
    ) -> (String, String) {
        let mut d = self.inner.lock();
        let message = d.find(channel_id, message_id).cloned();
        let message = message.unwrap_or_else(|| panic!("fake discord: no message {message_id} in channel {channel_id}"));
        let data = json!({"custom_id": custom_id, "component_type": 2});
        interaction(&mut d, 3, channel_id, guild_id, &user, data, Some(message))
    }

    /// Closes the live socket without a close frame; serenity then RESUMEs at
    /// once. Dispatches until then are kept for replay. Panics if none is live.
    pub fn drop_connection(&self) {
        let live = self.inner.lock().gw.live.take();
        let (_, tx) = live.expect("fake discord: drop_connection with no live gateway session");
        let _ = tx.send(Cmd::Drop);
    }

    /// Sends op 7 RECONNECT on the live socket; later dispatches wait for the RESUME.
    pub fn send_reconnect(&self) {
        let live = self.inner.lock().gw.live.take();
        let (_, tx) = live.expect("fake discord: send_reconnect with no live gateway session");
        let _ = tx.send(Cmd::Frame(json!({"op": 7, "d": null}).to_string()));
    }

    /// Forgets the session: the next RESUME gets op 9 INVALID_SESSION (serenity
    /// then re-IDENTIFYs, about 5 s later).
    pub fn invalidate_session(&self) {
        self.inner.lock().gw.session = None;
    }

    /// A channel's stored messages, oldest first (as REST returns them, without `guild_id`).
    pub fn history(&self, channel_id: &str) -> Vec<Value> {
        self.inner.lock().channels.get(channel_id).cloned().unwrap_or_default()
    }

    /// Requests of one kind so far, faulted ones included: `get_gateway`,
    /// `get_gateway_bot`, `get_current_user`, `get_current_application`,
    /// `create_message`, `get_messages`, `edit_message`, `interaction_callback`,
    /// `edit_original`, `create_followup`, `bulk_commands`, `download`, `unknown`.
    pub fn calls(&self, route_kind: &str) -> usize {
        self.inner.lock().calls.get(route_kind).copied().unwrap_or(0)
    }

    getters! {
        /// Every message created through REST or as a followup.
        sent -> Vec<Sent> = |d| d.sent.clone();
        /// Every accepted message edit.
        edits -> Vec<Edit> = |d| d.edits.clone();
        /// Every accepted interaction callback.
        interaction_responses -> Vec<InteractionResponse> = |d| d.responses.clone();
        /// Every accepted bulk command overwrite: (guild id, commands as sent).
        commands -> Vec<(Option<String>, Vec<Value>)> = |d| d.commands.clone();
        /// Every REST request: (arrival, method, path, status).
        requests_log -> Vec<(Instant, String, String, u16)> = |d| d.log.clone();
        /// Every gateway payload received: (op, d).
        gateway_ops -> Vec<(u8, Value)> = |d| d.gw.ops.clone();
        /// Accepted IDENTIFYs.
        identifies -> usize = |d| d.gw.identifies;
        /// Accepted RESUMEs.
        resumes -> usize = |d| d.gw.resumes;
        /// `d.intents` of the last accepted IDENTIFY.
        intents -> Option<u64> = |d| d.gw.intents;
    }

    /// Waits until at least `n` messages were sent; panics after `timeout`.
    pub async fn wait_sent(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        self.wait(&format!("{n} sent message(s)"), timeout, |d| (d.sent.len() >= n).then(|| d.sent.clone())).await
    }

    /// Waits until a session is live (READY or RESUMED sent on a socket that
    /// is still open); panics after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) {
        self.wait("a live gateway session", timeout, |d| d.gw.live.is_some().then_some(())).await
    }

    async fn wait<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Data) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            if let Some(v) = check(&self.inner.lock()) {
                return v;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("fake discord: waited {timeout:?} for {what}; sent so far: {:?}", self.sent());
            }
        }
    }
}

fn interaction(
    d: &mut Data,
    kind: u8,
    channel: &str,
    guild: Option<&str>,
    user: &Author,
    data: Value,
    msg: Option<Value>,
) -> (String, String) {
    let id = d.snowflake();
    let token = format!("fake-interaction-token-{id}");
    let mut i = json!({"id": id, "application_id": APP_ID, "type": kind, "data": data, "channel_id": channel, "token": token,
        "version": 1, "locale": "en-US", "entitlements": [], "attachment_size_limit": 10_485_760,
        "app_permissions": "0", "context": if guild.is_some() { 0 } else { 1 }});
    match guild {
        Some(g) => {
            (i["guild_id"], i["guild_locale"]) = (json!(g), json!("en-US"));
            i["member"] = json!({"user": user.json(), "roles": [], "joined_at": now(), "deaf": false, "mute": false,
                                 "flags": 0, "permissions": "0"});
        }
        None => i["user"] = user.json(),
    }
    let message_id = msg.as_ref().and_then(|m| m["id"].as_str()).map(str::to_string);
    if let Some(m) = msg {
        i["message"] = m;
    }
    let pending = Pending { token: token.clone(), channel_id: channel.to_string(), message_id, answered: false, original: None };
    d.interactions.insert(id.clone(), pending);
    d.gw.dispatch("INTERACTION_CREATE", i, true);
    (id, token)
}

fn option_type(v: &Value) -> u8 {
    match v {
        Value::Bool(_) => 5,
        Value::Number(n) if n.is_f64() => 10,
        Value::Number(_) => 4,
        _ => 3,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "username": BOT_NAME, "discriminator": "0", "global_name": null, "avatar": null, "bot": true,
           "verified": true, "mfa_enabled": false, "flags": 0, "public_flags": 0})
}

// ---------------------------------------------------------------- gateway

async fn serve_socket(inner: Arc<Inner>, stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (conn, interval) = {
        let gw = &mut inner.lock().gw;
        gw.conns += 1;
        (gw.conns, gw.heartbeat_ms)
    };
    let hello = json!({"op": 10, "d": {"heartbeat_interval": interval}}).to_string();
    if ws.send(WsMsg::Text(hello)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(WsMsg::Text(text))) => on_frame(&inner, conn, &tx, &text),
                Some(Ok(WsMsg::Close(frame))) => {
                    client_closed(&inner, conn, frame.map(|f| u16::from(f.code)));
                    let _ = ws.close(None).await; // flushes tungstenite's echo of the close frame
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            cmd = rx.recv() => match cmd {
                Some(Cmd::Frame(text)) => if ws.send(WsMsg::Text(text)).await.is_err() { break },
                Some(Cmd::Close(code, reason)) => {
                    let _ = ws.close(Some(CloseFrame { code: code.into(), reason: reason.into() })).await;
                    break;
                }
                // Dropping the stream closes TCP without a close frame.
                Some(Cmd::Drop) | None => break,
            },
        }
    }
    let gw = &mut inner.lock().gw;
    if gw.is_live(conn) {
        gw.live = None;
    }
    inner.changed.notify_waiters();
}

/// A clean close (1000/1001) by the client ends its session, as on Discord.
fn client_closed(inner: &Inner, conn: u64, code: Option<u16>) {
    let gw = &mut inner.lock().gw;
    if matches!(code, Some(1000 | 1001)) && gw.is_live(conn) {
        gw.session = None;
    }
}

fn on_frame(inner: &Inner, conn: u64, tx: &Tx, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        let _ = tx.send(Cmd::Close(4002, "Error while decoding payload."));
        return;
    };
    let op = v["op"].as_u64().and_then(|o| u8::try_from(o).ok()).unwrap_or(u8::MAX);
    let gw = &mut inner.lock().gw;
    gw.ops.push((op, v["d"].clone()));
    match op {
        1 => drop(tx.send(Cmd::Frame(json!({"op": 11}).to_string()))),
        2 => identify(inner, gw, conn, tx, &v["d"]),
        6 => resume(inner, gw, conn, tx, &v["d"]),
        3 | 4 | 8 | 31 => {}
        _ => drop(tx.send(Cmd::Close(4001, "Unknown opcode."))),
    }
    inner.changed.notify_waiters();
}

fn identify(inner: &Inner, gw: &mut Gw, conn: u64, tx: &Tx, d: &Value) {
    if !inner.token_ok(d["token"].as_str()) {
        let _ = tx.send(Cmd::Close(4004, "Authentication failed."));
        return;
    }
    (gw.identifies, gw.sessions, gw.intents) = (gw.identifies + 1, gw.sessions + 1, d["intents"].as_u64());
    let session = format!("fake-session-{}", gw.sessions);
    (gw.session, gw.seq, gw.live) = (Some(session.clone()), 0, Some((conn, tx.clone())));
    gw.replay.clear();
    let ready = json!({"v": 10, "user": bot_user(), "guilds": [], "session_id": session,
        "resume_gateway_url": inner.gateway_url, "shard": [0, 1], "application": {"id": APP_ID, "flags": 0}});
    gw.dispatch("READY", ready, false);
}

fn resume(inner: &Inner, gw: &mut Gw, conn: u64, tx: &Tx, d: &Value) {
    let known = gw.session.is_some() && d["session_id"].as_str() == gw.session.as_deref();
    if !known || !inner.token_ok(d["token"].as_str()) {
        let _ = tx.send(Cmd::Frame(json!({"op": 9, "d": false}).to_string()));
        return;
    }
    gw.resumes += 1;
    let from = d["seq"].as_u64().unwrap_or(0);
    for (_, frame) in gw.replay.iter().filter(|(s, _)| *s > from) {
        let _ = tx.send(Cmd::Frame(frame.clone()));
    }
    gw.live = Some((conn, tx.clone()));
    gw.dispatch("RESUMED", json!({}), false);
}

// ------------------------------------------------------------------- REST

type Handler<'a> = Box<dyn FnOnce(&mut Data) -> Response + 'a>;

fn h<'a>(f: impl FnOnce(&mut Data) -> Response + 'a) -> Handler<'a> {
    Box::new(f)
}

/// (route kind for `calls`/`fail_next`, whether `Authorization: Bot` is
/// checked, handler). Interaction and webhook routes authenticate by the
/// token in the path; `/gateway` and the CDN need no auth.
fn route<'a>(
    inner: &'a Inner,
    method: &Method,
    path: &'a str,
    q: &'a HashMap<String, String>,
    body: &'a Value,
) -> (&'static str, bool, Handler<'a>) {
    let (api, rest) = path.strip_prefix("/api/v10/").map_or((false, path.trim_start_matches('/')), |p| (true, p));
    let url = inner.gateway_url.as_str();
    match (method.as_str(), api, rest.split('/').collect::<Vec<_>>().as_slice()) {
        ("GET", true, &["gateway"]) => ("get_gateway", false, h(move |_| Json(json!({"url": url})).into_response())),
        ("GET", true, &["gateway", "bot"]) => ("get_gateway_bot", true, h(move |_| Json(gateway_bot(url)).into_response())),
        ("GET", true, &["users", "@me"]) => ("get_current_user", true, h(|_| Json(bot_user()).into_response())),
        ("GET", true, &["oauth2", "applications", "@me"]) => ("get_current_application", true, h(|_| Json(application()).into_response())),
        ("POST", true, &["channels", c, "messages"]) => ("create_message", true, h(move |d| create_message(d, c, body))),
        ("GET", true, &["channels", c, "messages"]) => ("get_messages", true, h(move |d| get_messages(d, c, q))),
        ("PATCH", true, &["channels", c, "messages", m]) => ("edit_message", true, h(move |d| edit_message(d, c, m, body))),
        ("POST", true, &["interactions", i, t, "callback"]) => ("interaction_callback", false, h(move |d| callback(d, i, t, body))),
        ("PATCH", true, &["webhooks", a, t, "messages", "@original"]) => ("edit_original", false, h(move |d| edit_original(d, a, t, body))),
        ("POST", true, &["webhooks", a, t]) => ("create_followup", false, h(move |d| followup(d, a, t, body))),
        ("PUT", true, &["applications", a, "commands"]) => ("bulk_commands", true, h(move |d| bulk_commands(d, a, None, body))),
        ("PUT", true, &["applications", a, "guilds", g, "commands"]) => {
            ("bulk_commands", true, h(move |d| bulk_commands(d, a, Some(g), body)))
        }
        ("GET", false, &["attachments", _, _, _]) => ("download", false, h(move |d| download(d, path))),
        _ => ("unknown", false, h(|_| err(404, 0, "404: Not Found"))),
    }
}

async fn rest_handler(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (kind, auth, handler) = route(&inner, &method, uri.path(), &q, &body);
    let authorized = !auth || headers.get("authorization").and_then(|h| h.to_str().ok()) == Some(&format!("Bot {}", inner.token));
    let mut d = inner.lock();
    *d.calls.entry(kind.to_string()).or_default() += 1;
    let resp = if !authorized {
        err(401, 0, "401: Unauthorized")
    } else if let Some(fault) = d.faults.get_mut(kind).and_then(VecDeque::pop_front) {
        fault_response(fault)
    } else {
        handler(&mut d)
    };
    d.log.push((arrived, method.to_string(), uri.path().to_string(), resp.status().as_u16()));
    drop(d);
    inner.changed.notify_waiters();
    resp
}

fn gateway_bot(url: &str) -> Value {
    json!({"url": url, "shards": 1, "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}})
}

fn application() -> Value {
    json!({"id": APP_ID, "name": BOT_NAME, "icon": null, "description": "", "rpc_origins": [], "bot_public": false,
           "bot_require_code_grant": false, "verify_key": "0".repeat(64), "team": null, "flags": 0, "bot": bot_user(),
           "owner": {"id": "900000000000000003", "username": "owner", "discriminator": "0", "global_name": null, "avatar": null}})
}

fn download(d: &mut Data, path: &str) -> Response {
    match d.files.get(path) {
        Some((content_type, bytes)) => ([(CONTENT_TYPE, content_type.clone())], bytes.clone()).into_response(),
        None => err(404, 0, "404: Not Found"),
    }
}

fn create_message(d: &mut Data, channel: &str, body: &Value) -> Response {
    if d.missing.contains(channel) {
        return err(404, 10003, "Unknown Channel");
    }
    if let Some(r) = check_content(body, true) {
        return r;
    }
    let reference = &body["message_reference"];
    let Some(ref_id) = id_str(&reference["message_id"]) else {
        return Json(new_bot_message(d, channel, body, None, json!({}))).into_response();
    };
    let extra = match d.find(channel, &ref_id).cloned() {
        Some(r) => {
            json!({"type": 19, "message_reference": {"type": 0, "message_id": ref_id, "channel_id": channel}, "referenced_message": r})
        }
        None if reference["fail_if_not_exists"] == json!(false) => json!({}),
        None => return form_err(json!({"message_reference": field_err("MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")})),
    };
    Json(new_bot_message(d, channel, body, None, extra)).into_response()
}

/// Stores a message by the bot and records it as `Sent`.
fn new_bot_message(d: &mut Data, channel: &str, body: &Value, interaction_token: Option<String>, mut extra: Value) -> Value {
    let content = body["content"].as_str().unwrap_or_default().to_string();
    let components = body.get("components").cloned();
    if let Some(c) = &components {
        extra["components"] = c.clone();
    }
    let m = d.store_message(channel, bot_user(), &content, extra);
    let (channel_id, message_id) = (channel.to_string(), m["id"].as_str().unwrap_or_default().to_string());
    let reference = id_str(&body["message_reference"]["message_id"]);
    d.sent.push(Sent { channel_id, message_id, content, components, reference, interaction_token });
    m
}

fn get_messages(d: &mut Data, channel: &str, q: &HashMap<String, String>) -> Response {
    if d.missing.contains(channel) {
        return err(404, 10003, "Unknown Channel");
    }
    let limit = q.get("limit").map_or(Some(50), |l| l.parse::<usize>().ok()).filter(|l| (1..=100).contains(l));
    let Some(limit) = limit else {
        return form_err(json!({"limit": field_err("NUMBER_TYPE_MAX", "int value should be less than or equal to 100.")}));
    };
    let num = |m: &Value| m["id"].as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let bound = |k: &str| q.get(k).and_then(|s| s.parse::<u64>().ok());
    let all = d.channels.get(channel).cloned().unwrap_or_default();
    let out: Vec<Value> = match (bound("after"), bound("before")) {
        // The `limit` messages right after `after`, still newest first (as Discord does).
        (Some(after), _) => all.into_iter().filter(|m| num(m) > after).take(limit).collect::<Vec<_>>().into_iter().rev().collect(),
        (None, before) => all.into_iter().rev().filter(|m| before.is_none_or(|b| num(m) < b)).take(limit).collect(),
    };
    Json(out).into_response()
}

fn edit_message(d: &mut Data, channel: &str, message: &str, body: &Value) -> Response {
    if d.missing.contains(channel) {
        return err(404, 10003, "Unknown Channel");
    }
    apply_edit(d, channel, message, body, None)
}

fn apply_edit(d: &mut Data, channel: &str, message: &str, body: &Value, interaction_token: Option<String>) -> Response {
    if let Some(r) = check_content(body, false) {
        return r;
    }
    let Some(m) = d.find(channel, message) else { return err(404, 10008, "Unknown Message") };
    if m["author"]["id"] != BOT_ID {
        return err(403, 50005, "Cannot edit a message authored by another user");
    }
    for key in ["content", "components", "embeds"].into_iter().filter(|k| body.get(k).is_some()) {
        m[key] = body[key].clone();
    }
    m["edited_timestamp"] = json!(now());
    let m = m.clone();
    let (content, components) = (body.get("content").and_then(Value::as_str).map(str::to_string), body.get("components").cloned());
    d.edits.push(Edit { channel_id: channel.into(), message_id: message.into(), content, components, interaction_token });
    Json(m).into_response()
}

fn callback(d: &mut Data, id: &str, token: &str, body: &Value) -> Response {
    let Some(p) = d.interactions.get(id) else { return err(404, 10062, "Unknown interaction") };
    if p.token != token {
        return err(401, 50027, "Invalid Webhook Token");
    }
    if p.answered {
        return err(400, 40060, "Interaction has already been acknowledged.");
    }
    if let Some(r) = check_content(&body["data"], false) {
        return r;
    }
    let kind = body["type"].as_u64().and_then(|k| u8::try_from(k).ok()).unwrap_or(0);
    let (channel, message_id) = (p.channel_id.clone(), p.message_id.clone());
    // 4/5 create the original response message (5 as an empty "thinking" one); 6/7 answer on the clicked message.
    let original = match kind {
        4 | 5 => {
            let content = if kind == 4 { body["data"]["content"].as_str().unwrap_or_default() } else { "" };
            d.store_message(&channel, bot_user(), content, json!({"application_id": APP_ID, "webhook_id": APP_ID}))["id"]
                .as_str()
                .map(str::to_string)
        }
        6 | 7 => message_id,
        _ => None,
    };
    if let (7, Some(m)) = (kind, original.as_deref().and_then(|m| d.find(&channel, m))) {
        for key in ["content", "components"].into_iter().filter(|k| body["data"].get(k).is_some()) {
            m[key] = body["data"][key].clone();
        }
    }
    let p = d.interactions.get_mut(id).expect("looked up above");
    (p.answered, p.original) = (true, original);
    d.responses.push(InteractionResponse { interaction_id: id.into(), kind, data: body["data"].clone() });
    StatusCode::NO_CONTENT.into_response()
}

fn by_token<'d>(d: &'d Data, app: &str, token: &str) -> Option<&'d Pending> {
    d.interactions.values().find(|p| p.token == token).filter(|_| app == APP_ID)
}

fn edit_original(d: &mut Data, app: &str, token: &str, body: &Value) -> Response {
    let Some(p) = by_token(d, app, token) else { return err(404, 10015, "Unknown Webhook") };
    let (channel, original) = (p.channel_id.clone(), p.original.clone());
    let Some(original) = original else { return err(404, 10008, "Unknown Message") };
    apply_edit(d, &channel, &original, body, Some(token.to_string()))
}

fn followup(d: &mut Data, app: &str, token: &str, body: &Value) -> Response {
    let Some(p) = by_token(d, app, token).filter(|p| p.answered) else { return err(404, 10015, "Unknown Webhook") };
    let channel = p.channel_id.clone();
    if let Some(r) = check_content(body, true) {
        return r;
    }
    let extra = json!({"application_id": APP_ID, "webhook_id": APP_ID});
    Json(new_bot_message(d, &channel, body, Some(token.to_string()), extra)).into_response()
}

fn bulk_commands(d: &mut Data, app: &str, guild: Option<&str>, body: &Value) -> Response {
    if app != APP_ID {
        return err(403, 50001, "Missing Access");
    }
    let Some(cmds) = body.as_array() else { return form_err(field_err("BASE_TYPE_ARRAY", "Must be an array.")) };
    let errors: Map<String, Value> =
        cmds.iter().enumerate().filter_map(|(i, c)| validate_command(c, true).map(|e| (i.to_string(), e))).collect();
    if !errors.is_empty() {
        return form_err(Value::Object(errors));
    }
    d.commands.push((guild.map(str::to_string), cmds.clone()));
    let version = d.snowflake();
    let mut out = Vec::new();
    for c in cmds {
        let mut c = c.clone();
        let given = json!({"id": d.snowflake(), "application_id": APP_ID, "version": version, "guild_id": guild});
        let defaults = json!({"type": 1, "default_member_permissions": null, "nsfw": false, "options": []});
        for (k, v) in defaults.as_object().into_iter().flatten() {
            if c.get(k.as_str()).is_none_or(Value::is_null) {
                c[k] = v.clone();
            }
        }
        for (k, v) in given.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        out.push(c);
    }
    Json(out).into_response()
}

/// Discord's checks on a command or option: chat-input names match
/// `^[-_a-z0-9]{1,32}$`, their descriptions are 1-100 characters.
fn validate_command(c: &Value, top: bool) -> Option<Value> {
    let name = c["name"].as_str().unwrap_or_default();
    let chat_input = !top || c["type"].as_u64().unwrap_or(1) == 1;
    let valid_char = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_';
    let name_ok = (1..=32).contains(&name.chars().count()) && (!chat_input || name.chars().all(valid_char));
    let desc = c["description"].as_str().map_or(0, |s| s.chars().count());
    let mut errs = Map::new();
    if !name_ok {
        errs.insert("name".into(), field_err("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"));
    }
    if chat_input && !(1..=100).contains(&desc) {
        errs.insert("description".into(), field_err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."));
    }
    let opts = c["options"].as_array().map(Vec::as_slice).unwrap_or_default();
    let opt_errs: Map<String, Value> =
        opts.iter().enumerate().filter_map(|(i, o)| validate_command(o, false).map(|e| (i.to_string(), e))).collect();
    if !opt_errs.is_empty() {
        errs.insert("options".into(), Value::Object(opt_errs));
    }
    (!errs.is_empty()).then_some(Value::Object(errs))
}

/// Discord's content rules: at most 2000 characters; a new message needs
/// content, components, embeds, stickers or attachments.
fn check_content(body: &Value, creating: bool) -> Option<Response> {
    let content = body["content"].as_str().unwrap_or_default();
    if content.chars().count() > 2000 {
        return Some(form_err(json!({"content": field_err("BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")})));
    }
    let has = |k: &str| body[k].as_array().is_some_and(|a| !a.is_empty());
    let empty = content.is_empty() && !["components", "embeds", "sticker_ids", "attachments"].into_iter().any(has);
    (creating && empty).then(|| err(400, 50006, "Cannot send an empty message"))
}

fn id_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field_err(code: &str, message: &str) -> Value {
    json!({"_errors": [{"code": code, "message": message}]})
}

fn err(status: u16, code: u32, message: &str) -> Response {
    (StatusCode::from_u16(status).expect("valid status"), Json(json!({"message": message, "code": code}))).into_response()
}

fn form_err(errors: Value) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"message": "Invalid Form Body", "code": 50035, "errors": errors}))).into_response()
}

fn fault_response(fault: Fault) -> Response {
    let (retry_after, global) = match fault {
        Fault::Status(code, body) => return (StatusCode::from_u16(code).expect("valid fault status"), Json(body)).into_response(),
        Fault::RateLimited { retry_after_secs, global } => (retry_after_secs, global),
    };
    let body = json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": global});
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    let reset = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64() + retry_after;
    let scope = if global { "global" } else { "user" };
    let headers = [
        ("retry-after", format!("{}", retry_after.ceil())),
        ("x-ratelimit-limit", "5".into()),
        ("x-ratelimit-remaining", "0".into()),
        ("x-ratelimit-reset", format!("{reset:.3}")),
        ("x-ratelimit-reset-after", format!("{retry_after:.3}")),
        ("x-ratelimit-bucket", "fakebucket0000".into()),
        ("x-ratelimit-scope", scope.into()),
        ("x-ratelimit-global", global.to_string()),
    ];
    for (name, value) in headers.into_iter().filter(|(n, _)| global || *n != "x-ratelimit-global") {
        resp.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_str(&value).expect("ascii header"));
    }
    resp
}

#[cfg(test)]
mod self_check {
    //! Drives the fake with a real serenity 0.12.5 client.

    use super::{Author, FakeDiscord, Fault};
    use serde_json::json;
    use serenity::all::{
        ChannelId, ClientBuilder, Command, Context, CreateCommand, CreateInteractionResponse, CreateInteractionResponseMessage,
        EventHandler, GatewayIntents, GetMessages, Interaction, Message, Ready, ResumedEvent,
    };
    use serenity::http::HttpBuilder;
    use std::time::{Duration, Instant};
    use tokio::sync::mpsc;

    #[derive(Debug)]
    enum Ev {
        Ready,
        Resumed,
        Message(String),
        Interaction(String, bool),
    }

    struct Recorder(mpsc::UnboundedSender<Ev>);

    #[serenity::async_trait]
    impl EventHandler for Recorder {
        async fn ready(&self, _: Context, _: Ready) {
            let _ = self.0.send(Ev::Ready);
        }

        async fn resume(&self, _: Context, _: ResumedEvent) {
            let _ = self.0.send(Ev::Resumed);
        }

        async fn message(&self, _: Context, msg: Message) {
            let _ = self.0.send(Ev::Message(msg.content));
        }

        async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
            let reply = CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content("pong"));
            let (what, ok) = match interaction {
                Interaction::Command(c) => (c.data.name.clone(), c.create_response(&ctx.http, reply).await.is_ok()),
                Interaction::Component(c) => {
                    let ack = c.create_response(&ctx.http, CreateInteractionResponse::Acknowledge).await.is_ok();
                    (format!("{}@{}", c.data.custom_id, c.message.content), ack)
                }
                other => (format!("{:?}", other.kind()), false),
            };
            let _ = self.0.send(Ev::Interaction(what, ok));
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Ev>) -> Ev {
        tokio::time::timeout(Duration::from_secs(3), rx.recv()).await.expect("serenity event within 3 s").expect("handler alive")
    }

    /// Everything the runtime relies on, end to end through serenity: READY,
    /// MESSAGE_CREATE, REST sends/history/commands, resume after a dropped
    /// socket (no second IDENTIFY, no duplicate), interactions, 429s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serenity_round_trip() {
        let fake = FakeDiscord::start("test-token").await;
        let http = HttpBuilder::new("test-token").proxy(fake.base_url()).ratelimiter_disabled(true).build();
        let intents = GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES | GatewayIntents::MESSAGE_CONTENT;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut client = ClientBuilder::new_with_http(http, intents).event_handler(Recorder(tx)).await.expect("client builds");
        let (shards, http) = (client.shard_manager.clone(), client.http.clone());
        tokio::spawn(async move { client.start().await });

        assert!(matches!(next(&mut rx).await, Ev::Ready));
        assert_eq!(fake.intents(), Some(intents.bits()));
        let alice = Author::user("100000000000000001", "alice");
        fake.push_message("200", Some("300"), alice.clone(), "hello <@900000000000000001>");
        assert!(matches!(next(&mut rx).await, Ev::Message(m) if m == "hello <@900000000000000001>"));

        let hi = ChannelId::new(200).say(&http, "hi").await.expect("say");
        assert_eq!(fake.wait_sent(1, Duration::from_secs(1)).await[0].content, "hi");
        let history = ChannelId::new(200).messages(&http, GetMessages::new().limit(10)).await.expect("history");
        assert_eq!(history.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["hi", "hello <@900000000000000001>"]);
        let cmds = Command::set_global_commands(&http, vec![CreateCommand::new("ask").description("Ask")]).await.expect("commands");
        assert_eq!(cmds[0].name, "ask");

        let dropped = Instant::now();
        fake.drop_connection();
        fake.push_message("200", None, alice.clone(), "while away");
        let mut seen = vec![];
        while seen.len() < 2 {
            seen.push(next(&mut rx).await);
        }
        eprintln!("serenity resumed {:?} after drop_connection", dropped.elapsed());
        assert!(seen.iter().any(|e| matches!(e, Ev::Resumed)), "{seen:?}");
        assert!(seen.iter().any(|e| matches!(e, Ev::Message(m) if m == "while away")), "{seen:?}");
        assert_eq!((fake.identifies(), fake.resumes()), (1, 1));
        fake.push_message("200", None, alice.clone(), "sentinel");
        assert!(matches!(next(&mut rx).await, Ev::Message(m) if m == "sentinel"), "replayed message arrived twice");

        fake.push_interaction_command("200", Some("300"), alice.clone(), "ask", vec![("q".into(), json!("why"))]);
        assert!(matches!(next(&mut rx).await, Ev::Interaction(n, true) if n == "ask"));
        fake.push_interaction_component("200", None, alice, &hi.id.to_string(), "approve:1");
        assert!(matches!(next(&mut rx).await, Ev::Interaction(n, true) if n == "approve:1@hi"));
        let kinds: Vec<(u8, Option<String>)> =
            fake.interaction_responses().into_iter().map(|r| (r.kind, r.data["content"].as_str().map(str::to_string))).collect();
        assert_eq!(kinds, [(4, Some("pong".to_string())), (6, None)]);

        fake.fail_next("create_message", 1, Fault::RateLimited { retry_after_secs: 0.5, global: false });
        let limited = ChannelId::new(200).say(&http, "again").await.expect_err("429");
        // Discord's 429 body has no `code`, so serenity reports a decode failure with the status kept.
        let serenity::Error::Http(limited) = limited else { panic!("{limited}") };
        assert_eq!(limited.status_code().map(|s| s.as_u16()), Some(429));
        fake.missing_channel("404");
        assert!(ChannelId::new(404).say(&http, "x").await.expect_err("404").to_string().contains("Unknown Channel"));
        shards.shutdown_all().await;
    }
}
