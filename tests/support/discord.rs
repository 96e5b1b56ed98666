//! A fake Discord on 127.0.0.1:0: REST API v10 (JSON) plus the gateway v10
//! (JSON text frames, no compression), shaped to what Discord sends and
//! what clients send it: the daemon's own gateway client, and a real
//! serenity 0.12.5 client in the self-check (point serenity at it with
//! `HttpBuilder::new(token).proxy(fake.base_url()).ratelimiter_disabled(true)`;
//! it then finds the gateway through `GET /api/v10/gateway`).
//!
//! Invariants: every socket write goes through the connection's queue, so
//! frames leave in sequence order; a dispatch is sequenced only while a
//! session exists (live or resumable) and stays in that session's replay
//! buffer until a new IDENTIFY replaces the session. Messages pushed while no
//! session exists are only in the REST history. The fake outlives client
//! restarts: a restarted client IDENTIFYs and gets a new session.

// Explicit paths: the benchmark includes this file through `#[path]` too.
#[path = "discord/gateway.rs"]
mod gateway;
#[path = "discord/rest.rs"]
mod rest;
#[cfg(test)]
#[path = "discord/self_check.rs"]
mod self_check;
#[path = "discord/state.rs"]
mod state;

use axum::Router;
use gateway::{Cmd, Gw, serve_socket};
use rest::rest_handler;
use serde_json::{Value, json};
use state::{Data, Inner, interaction, now};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::Notify;

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
    /// The normal answer (queue it first to fault a later request).
    Pass,
    /// The request takes effect (a message is created) but no answer ever
    /// comes: what a client sees when it is killed, or its connection
    /// drops, between Discord taking a message and the reply.
    TakenNoAnswer,
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

    /// Closes the live socket without a close frame; the client then RESUMEs at
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

    /// Stops (or resumes) acknowledging heartbeats with op 11.
    pub fn mute_heartbeat_acks(&self, mute: bool) {
        self.inner.lock().gw.mute_acks = mute;
    }

    /// Forgets the session: the next RESUME gets op 9 INVALID_SESSION (the
    /// client then re-IDENTIFYs, 1 to 5 s later).
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
        /// Message creates answered with an earlier message (same nonce, `enforce_nonce`).
        nonce_hits -> usize = |d| d.nonce_hits;
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

fn option_type(v: &Value) -> u8 {
    match v {
        Value::Bool(_) => 5,
        Value::Number(n) if n.is_f64() => 10,
        Value::Number(_) => 4,
        _ => 3,
    }
}
