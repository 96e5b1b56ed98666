//! Discord: the gateway websocket in (our own client, see [`ws`]:
//! heartbeats, RESUME, close codes), REST out (our own small client, see
//! [`rest`]).
//!
//! Inbound: the gateway hands each event to one loop here through a bounded
//! queue, in the order Discord sent them; the loop takes them in batches,
//! stores each channel's messages with the channel's last message id as its
//! cursor, and hands them to processing.
//! Slash commands and button presses are stored first and acknowledged
//! (deferred) after, inside Discord's 3-second window; the answer then
//! edits the deferred response. After every READY (a fresh session: at
//! start, or when a RESUME was refused) the channels the bot serves are
//! caught up from their cursors through REST history, bounded by
//! `AGENT_RUNTIME_DISCORD_CATCHUP_MESSAGES`; the inbox's dedupe key
//! (`<channel>:<message id>`) makes the overlap with live events harmless.

mod events;
mod model;
pub mod rest;
mod ws;

pub use rest::{DiscordPublisher, DiscordRest, INTERACTION_PREFIX};

use events::{EVENT_QUEUE, Ev};
use model::{Interaction, Message, User};

use crate::BoxFuture;
use crate::config::DiscordConfig;
use crate::domain::{ChatKind, ChatRef, Inbound, InboundMeta, TraceId};
use crate::gateway::{Arrival, COMMANDS, Dispatcher, Gateway, GatewayError};
use crate::health::Health;
use crate::store::Cursor;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The connector's name in chat references, the inbox and health.
pub const NAME: &str = "discord";

/// Discord's message length limit, in characters.
pub const MAX_MESSAGE: usize = 2000;

/// The inbound side: receives, stores, acknowledges, hands stored messages on.
pub struct DiscordConnector {
    /// Its settings.
    pub config: DiscordConfig,
    /// REST (history, interaction acknowledgements, commands, downloads).
    pub rest: DiscordRest,
    /// `AGENT_RUNTIME_COMMAND_SYNC_ENABLED`.
    pub command_sync: bool,
    /// `AGENT_RUNTIME_ATTACHMENT_MAX_BYTES`.
    pub attachment_max_bytes: u64,
    /// Stores messages.
    pub gateway: Gateway,
    /// Processes stored messages.
    pub dispatcher: Dispatcher,
    /// Where the connector reports its state (component `discord`).
    pub health: Health,
}

/// A channel the bot serves: its last stored message and its guild (REST
/// history does not say, and the mention rules need it).
#[derive(Debug, Clone, Copy)]
struct Seen {
    last: u64,
    guild: Option<u64>,
}

impl Seen {
    fn cursor(&self, channel: u64) -> Cursor {
        let value = match self.guild {
            Some(g) => format!("{}@{g}", self.last),
            None => self.last.to_string(),
        };
        Cursor { connector: NAME.into(), key: format!("channel:{channel}"), value }
    }
    fn parse(key: &str, value: &str) -> Option<(u64, Seen)> {
        let channel = key.strip_prefix("channel:")?.parse().ok()?;
        let (last, guild) = match value.split_once('@') {
            Some((l, g)) => (l.parse().ok()?, Some(g.parse().ok()?)),
            None => (value.parse().ok()?, None),
        };
        Some((channel, Seen { last, guild }))
    }
}

/// The loop's memory: who we are and what each channel has stored.
#[derive(Default)]
struct State {
    bot: u64,
    app: u64,
    synced: bool,
    channels: HashMap<u64, Seen>,
    /// Set by the handler when it dropped an event.
    lost: Arc<AtomicBool>,
}

impl super::Connector for DiscordConnector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(self: Box<Self>, stop: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.serve(stop).await })
    }
}

impl DiscordConnector {
    /// Runs until `stop`: the gateway connects (and connects again whenever
    /// the connection ends) while this loop handles its events.
    pub async fn serve(self, stop: CancellationToken) {
        self.health.register(NAME);
        let mut state = State::default();
        match self.gateway.cursors(NAME).await {
            Ok(rows) => state.channels = rows.iter().filter_map(|(k, v)| Seen::parse(k, v)).collect(),
            Err(e) => tracing::error!(error = %e, "cannot read the stored Discord cursors; missed messages are not caught up"),
        }
        let tls = match ws_tls() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "Discord cannot start");
                return self.health.degrade(NAME, e);
            }
        };
        let socket = ws::Socket { url: self.gateway_url().await, token: self.config.token.expose().to_string(), tls };
        let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
        let socket_stop = stop.child_token();
        let mut socket_task = tokio::spawn(ws::run(socket, tx, state.lost.clone(), socket_stop.clone()));
        let socket_ended = loop {
            tokio::select! {
                Some(ev) = rx.recv() => self.batch(ev, &mut rx, &mut state).await,
                _ = stop.cancelled() => break false,
                _ = &mut socket_task => break true,
            }
        };
        socket_stop.cancel();
        if !socket_ended {
            // The socket closes itself (a clean close, which ends the session).
            let _ = tokio::time::timeout(Duration::from_secs(5), socket_task).await;
        }
    }

    /// The gateway's address: the configured one, else what `GET /gateway/bot`
    /// says, else Discord's usual one.
    async fn gateway_url(&self) -> String {
        if let Some(url) = &self.config.gateway_url {
            return url.split('?').next().unwrap_or(url).to_string();
        }
        match self.rest.call(Method::GET, "gateway/bot", Value::Null, true).await {
            Ok(v) => match v["url"].as_str() {
                Some(url) => url.to_string(),
                None => ws::DEFAULT_GATEWAY.to_string(),
            },
            Err(e) => {
                tracing::warn!(error = %e.message, "could not ask Discord for its gateway address; using {}", ws::DEFAULT_GATEWAY);
                ws::DEFAULT_GATEWAY.to_string()
            }
        }
    }

    /// Handles `first` and whatever else is already queued, messages in id order.
    async fn batch(&self, first: Ev, rx: &mut mpsc::Receiver<Ev>, state: &mut State) {
        let mut events = vec![first];
        while events.len() < 256 {
            match rx.try_recv() {
                Ok(ev) => events.push(ev),
                Err(_) => break,
            }
        }
        let mut messages = Vec::new();
        for ev in events {
            match ev {
                Ev::Ready { user, app } => {
                    (state.bot, state.app) = (user, app);
                    self.health.healthy(NAME, "connected to the gateway");
                    tracing::info!("Discord connected");
                    if self.command_sync && !state.synced {
                        state.synced = self.sync_commands(app).await;
                    }
                    self.catch_up(state).await;
                }
                Ev::Resumed => self.health.healthy(NAME, "connected to the gateway (resumed)"),
                Ev::Down(why) => {
                    tracing::warn!("Discord gateway: {why}");
                    self.health.degrade(NAME, why);
                }
                Ev::Message(m) => messages.push(*m),
                Ev::Interaction(i) => self.interaction(*i).await,
            }
        }
        messages.sort_by_key(|m| m.id);
        let mut by_channel: Vec<(u64, Vec<Message>)> = Vec::new();
        for m in messages {
            match by_channel.iter_mut().find(|(c, _)| *c == m.channel_id) {
                Some((_, v)) => v.push(m),
                None => by_channel.push((m.channel_id, vec![m])),
            }
        }
        for (channel, msgs) in by_channel {
            let guild = msgs.iter().find_map(|m| m.guild_id);
            self.store(state, channel, guild, msgs).await;
        }
        if state.lost.swap(false, Ordering::SeqCst) {
            // Dropped messages are in each channel's history after its cursor.
            self.catch_up(state).await;
        }
    }

    /// Stores one channel's messages with its cursor, then hands them on.
    async fn store(&self, state: &mut State, channel: u64, guild: Option<u64>, msgs: Vec<Message>) {
        let Some(newest) = msgs.iter().map(|m| m.id).max() else { return };
        let mut arrivals = Vec::new();
        for m in &msgs {
            match self.message(state.bot, guild, m).await {
                Ok(Some(a)) => arrivals.push(a),
                Ok(None) => {}
                // Not stored: the next catch-up (after a reconnect) fetches them again from the old cursor.
                Err(e) => return self.health.degrade(NAME, format!("cannot store received messages: {e}")),
            }
        }
        let seen = state.channels.get(&channel).copied();
        let cursor = match seen {
            Some(s) if s.last >= newest => None,
            _ => Some(Seen { last: newest, guild: guild.or(seen.and_then(|s| s.guild)) }),
        };
        match self.gateway.ingest(arrivals, cursor.map(|s| s.cursor(channel))).await {
            Ok(new) => {
                if let Some(s) = cursor {
                    state.channels.insert(channel, s);
                }
                self.dispatcher.submit(new).await;
            }
            // Not stored: the next catch-up (after a reconnect) fetches them again from the old cursor.
            Err(e) => self.health.degrade(NAME, format!("cannot store received messages: {e}")),
        }
    }

    /// Fetches what each served channel missed since its cursor (bounded).
    async fn catch_up(&self, state: &mut State) {
        if self.config.catch_up == 0 {
            return;
        }
        let channels: Vec<(u64, Seen)> = state.channels.iter().map(|(c, s)| (*c, *s)).collect();
        let mut total = 0;
        for (channel, seen) in channels {
            let path = format!("channels/{channel}/messages?after={}&limit={}", seen.last, self.config.catch_up);
            let page = match self.rest.call(Method::GET, &path, Value::Null, true).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(channel, error = %e.message, "could not catch up a Discord channel");
                    continue;
                }
            };
            let msgs: Vec<Message> = match serde_json::from_value(page) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(channel, error = %e, "unreadable Discord history");
                    continue;
                }
            };
            let mut msgs: Vec<Message> = msgs.into_iter().filter(|m| m.id > seen.last).collect();
            msgs.sort_by_key(|m| m.id);
            total += msgs.len();
            self.store(state, channel, seen.guild, msgs).await;
        }
        if total > 0 {
            tracing::info!(messages = total, "caught up Discord messages missed while disconnected");
        }
    }

    /// A channel message as an arrival (`None`: not for us — bots, ourselves,
    /// empty). Its files are taken in only as far as the gateway allows,
    /// each streamed straight to disk.
    async fn message(&self, bot: u64, guild: Option<u64>, m: &Message) -> Result<Option<Arrival>, GatewayError> {
        if m.author.bot || m.author.id == bot {
            return Ok(None);
        }
        let (tag, tag_nick) = (format!("<@{bot}>"), format!("<@!{bot}>"));
        let mentioned = m.mentions.iter().any(|u| u.id == bot)
            || m.content.contains(&tag)
            || m.content.contains(&tag_nick)
            || m.referenced_message.as_ref().is_some_and(|r| r.author.id == bot);
        let text = m.content.replace(&tag, " ").replace(&tag_nick, " ").trim().to_string();
        if text.is_empty() && m.attachments.is_empty() {
            return Ok(None);
        }
        let meta = InboundMeta { message_id: Some(m.id.to_string()), ..Default::default() };
        let in_guild = m.guild_id.is_some() || guild.is_some();
        let dedupe_key = format!("{}:{}", m.channel_id, m.id);
        let msg = inbound(m.channel_id, in_guild, &m.author, text, mentioned, dedupe_key, meta);
        if m.attachments.is_empty() {
            return Ok(Some(Arrival::text(msg)));
        }
        let mut intake = self.gateway.intake(&msg, self.attachment_max_bytes).await?;
        for a in &m.attachments {
            let Some(mut sink) = intake.file(&a.filename, Some(a.size)).await else { continue };
            let fetched = self.rest.download(&a.url, &mut sink).await;
            sink.finish(fetched).await;
        }
        Ok(Some(intake.into_arrival(msg)))
    }

    /// A slash command or button press: stored, then acknowledged (deferred),
    /// then handed on. The answer edits the deferred response.
    async fn interaction(&self, i: Interaction) {
        let (Some(user), Some(channel)) = (i.actor(), i.channel()) else {
            tracing::debug!(kind = i.kind, "ignored a Discord interaction without a user or channel");
            return;
        };
        let in_guild = i.guild_id.is_some();
        let (msg, ack) = match i.kind {
            model::APPLICATION_COMMAND => {
                let meta =
                    InboundMeta { message_id: Some(format!("{INTERACTION_PREFIX}{}:{}", i.application_id, i.token)), ..Default::default() };
                (inbound(channel, in_guild, user, i.command_text(), true, format!("ia:{}", i.id), meta), 5)
            }
            model::MESSAGE_COMPONENT => {
                let custom_id = i.data.as_ref().map(|d| d.custom_id.clone()).unwrap_or_default();
                let meta = InboundMeta { pressed: i.message.as_ref().map(|m| m.id.to_string()), ..Default::default() };
                (inbound(channel, in_guild, user, custom_id, true, format!("ia:{}", i.id), meta), 6)
            }
            kind => {
                tracing::debug!(kind, "ignored a Discord interaction of another kind");
                return;
            }
        };
        let (id, token) = (i.id, &i.token);
        let new = match self.gateway.ingest(vec![Arrival::text(msg)], None).await {
            Ok(new) => new,
            Err(e) => {
                // Not acknowledged: Discord shows the user that the interaction failed, so they can retry.
                self.health.degrade(NAME, format!("cannot store received messages: {e}"));
                return;
            }
        };
        // 5: "thinking…", edited by the answer; 6: the button press is taken, the outcome edits the message.
        if let Err(e) = self.rest.call(Method::POST, &format!("interactions/{id}/{token}/callback"), json!({"type": ack}), false).await {
            tracing::warn!(error = %e.message, "could not acknowledge a Discord interaction");
        }
        self.dispatcher.submit(new).await;
    }

    /// Publishes the slash commands (bulk overwrite), globally or per guild.
    /// Returns whether every overwrite succeeded.
    async fn sync_commands(&self, app: u64) -> bool {
        let commands: Vec<Value> = COMMANDS
            .iter()
            .filter(|c| c.name != "pair")
            .map(|c| {
                let about: String = c.about.chars().take(100).collect();
                let mut cmd = json!({"name": c.name, "description": about, "type": 1});
                if let Some((_, args)) = c.usage.split_once(' ') {
                    let usage: String = args.chars().take(100).collect();
                    cmd["options"] = json!([{"type": 3, "name": "args", "description": usage, "required": args.starts_with('<')}]);
                }
                cmd
            })
            .collect();
        let paths: Vec<String> = if self.config.command_guild_ids.is_empty() {
            vec![format!("applications/{app}/commands")]
        } else {
            self.config.command_guild_ids.iter().map(|g| format!("applications/{app}/guilds/{g}/commands")).collect()
        };
        let mut ok = true;
        for path in paths {
            match self.rest.call(Method::PUT, &path, Value::Array(commands.clone()), true).await {
                Ok(_) => tracing::info!(path, "Discord slash commands published"),
                Err(e) => {
                    ok = false;
                    tracing::warn!(path, error = %e.message, "could not publish the Discord slash commands");
                }
            }
        }
        ok
    }
}

/// TLS for the gateway: the public web roots, the ring provider.
fn ws_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings for the Discord gateway: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A message in `channel` by `user`: guild channels are groups (named by
/// channel), DMs private chats (named by the user).
fn inbound(channel: u64, in_guild: bool, user: &User, text: String, mentioned: bool, dedupe_key: String, meta: InboundMeta) -> Inbound {
    let name = user.shown_name();
    Inbound {
        chat: chat_ref(channel),
        from_user_id: user.id.to_string(),
        display_name: if in_guild { format!("#{channel} (discord)") } else { name },
        text,
        kind: if in_guild { ChatKind::Group } else { ChatKind::Private },
        mentioned,
        dedupe_key,
        trace_id: TraceId::random(),
        meta,
    }
}

fn chat_ref(channel: u64) -> ChatRef {
    ChatRef { connector: NAME.to_string(), external_id: channel.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_keeps_the_guild_and_reads_back() {
        let s = Seen { last: 42, guild: Some(7) };
        let c = s.cursor(100);
        assert_eq!((c.key.as_str(), c.value.as_str()), ("channel:100", "42@7"));
        let (ch, back) = Seen::parse(&c.key, &c.value).expect("parses");
        assert_eq!((ch, back.last, back.guild), (100, 42, Some(7)));
        let dm = Seen { last: 9, guild: None }.cursor(5);
        assert_eq!(Seen::parse(&dm.key, &dm.value).map(|(c, s)| (c, s.last, s.guild)), Some((5, 9, None)));
        assert!(Seen::parse("updates", "12").is_none());
        assert!(Seen::parse("channel:x", "12").is_none());
    }
}
