//! Telegram through the Bot API (our own small client, [`api`], and our own loop).
//!
//! Inbound: `getUpdates` long polling. Each batch's attachments are taken
//! in as far as the gateway allows ([`Gateway::intake`]: nothing for a
//! message not addressed to the bot; within the per-file limit and the
//! chat's quota, streamed to disk), the batch is stored with the next
//! update offset in one transaction, and only then acknowledged — Telegram confirms updates when
//! the next `getUpdates` carries a higher offset, and callback queries are
//! answered after the store. A crash anywhere before the store makes
//! Telegram deliver the batch again; after it, the stored offset skips it
//! and the inbox's dedupe key (`<chat>:<message id>`) refuses it anyway.
//! A second poller on the token (409 Conflict) is reported on the heartbeat
//! and backed off, never looped on.
//!
//! Outbound: plain text (no parse mode, so agent output can never fail to
//! parse), split at 4,096 UTF-16 units; buttons as an inline keyboard;
//! decisions taken with a button edit the message that carried it. A 429's
//! `retry_after` defers the message; "chat not found" and "bot was blocked"
//! fail it for good.

use super::{Backoff, split_message, utf16_len};
use crate::BoxFuture;
use crate::config::TelegramConfig;
use crate::domain::{ChatKind, ChatRef, Inbound, InboundMeta, OutboundMessage, TraceId};
use crate::gateway::{Arrival, COMMANDS, Dispatcher, Gateway, GatewayError, Sink};
use crate::health::Health;
use crate::outbox::{Delivered, PublishError, Publisher};
use crate::store::Cursor;
use api::{Button, CallbackQuery, Chat, Error, Me, Message, Update, UpdateKind, User};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod api;

pub use api::Bot;

/// The connector's name in chat references, the inbox and health.
pub const NAME: &str = "telegram";

/// Telegram's message length limit, in UTF-16 code units.
pub const MAX_MESSAGE: usize = 4096;

/// The cursor key of the update stream.
const CURSOR_KEY: &str = "updates";

/// A Bot API client for `config` (the token never appears in logs or
/// errors: [`api`] strips it from every error, and we never print a URL).
pub fn bot(config: &TelegramConfig) -> Result<Bot, String> {
    Bot::new(&config.api_base, config.token.expose())
}

/// Why a Bot API call failed, as the outbox and the poller need it: a 429
/// waits its `retry_after`; network trouble, unreadable answers and a
/// server's errors are transient; every other refusal is permanent.
fn classify(e: &Error) -> PublishError {
    match e {
        Error::RetryAfter(wait) => PublishError::rate_limited(e.to_string(), *wait),
        _ if e.is_transient() => PublishError::transient(e.to_string()),
        _ => PublishError::permanent(e.to_string()),
    }
}

/// Delivers outbox rows to Telegram chats.
#[derive(Clone)]
pub struct TelegramPublisher {
    bot: Bot,
}

impl TelegramPublisher {
    /// A publisher over `bot`.
    pub fn new(bot: Bot) -> Self {
        Self { bot }
    }

    async fn deliver(&self, msg: &OutboundMessage) -> Result<Delivered, PublishError> {
        let chat = msg
            .chat
            .external_id
            .parse::<i64>()
            .map_err(|_| PublishError::permanent(format!("telegram: {:?} is not a Telegram chat id", msg.chat.external_id)))?;
        let buttons: Vec<Button<'_>> = msg.options.buttons.iter().map(|b| Button { text: &b.label, data: &b.data }).collect();
        if let Some(id) = msg.options.edit_of.as_deref().and_then(|s| s.parse::<i64>().ok()) {
            // An edit replaces the message that carried the buttons (and removes them).
            let text: String = msg.body.chars().take(MAX_MESSAGE / 2).collect();
            match self.bot.edit_message_text(chat, id, &text).await {
                Ok(edited) => return Ok(Delivered { platform_message_id: Some(edited.to_string()) }),
                Err(Error::NotModified(_)) => return Ok(Delivered { platform_message_id: Some(id.to_string()) }),
                Err(Error::EditGone(_)) => tracing::debug!("the message to edit is gone; sending the outcome as a new message"),
                Err(e) => return Err(classify(&e)),
            }
        }
        let parts = split_message(&msg.body, MAX_MESSAGE, utf16_len);
        let last = parts.len().saturating_sub(1);
        let mut delivered = None;
        for (i, part) in parts.into_iter().enumerate().skip(msg.parts_sent as usize) {
            // In groups, the first part answers the message it replies to.
            let reply_to = msg.options.reply_to.as_deref().and_then(|s| s.parse::<i64>().ok()).filter(|_| i == 0 && chat < 0);
            let keyboard = if i == last { buttons.as_slice() } else { &[] };
            match self.bot.send_message(chat, &part, reply_to, keyboard).await {
                Ok(id) => delivered = Some(id.to_string()),
                Err(e) => return Err(classify(&e).after_parts(i as u32)),
            }
        }
        Ok(Delivered { platform_message_id: delivered })
    }
}

impl Publisher for TelegramPublisher {
    fn publish<'a>(&'a self, msg: &'a OutboundMessage) -> BoxFuture<'a, Result<Delivered, PublishError>> {
        Box::pin(self.deliver(msg))
    }

    fn typing<'a>(&'a self, chat: &'a ChatRef) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Ok(id) = chat.external_id.parse::<i64>() else { return };
            if let Err(e) = self.bot.send_typing(id).await {
                tracing::debug!(error = %e, "telegram: sendChatAction failed");
            }
        })
    }
}

/// The inbound side: polls, stores, acknowledges, hands stored messages on.
pub struct TelegramConnector {
    /// The Bot API client.
    pub bot: Bot,
    /// Its settings.
    pub config: TelegramConfig,
    /// `AGENT_RUNTIME_COMMAND_SYNC_ENABLED`.
    pub command_sync: bool,
    /// `AGENT_RUNTIME_ATTACHMENT_MAX_BYTES`.
    pub attachment_max_bytes: u64,
    /// Stores messages.
    pub gateway: Gateway,
    /// Processes stored messages.
    pub dispatcher: Dispatcher,
    /// Where the connector reports its state (component `telegram`).
    pub health: Health,
}

/// A file to fetch for a message.
struct FileRef {
    id: String,
    name: String,
    size: u64,
}

impl super::Connector for TelegramConnector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(self: Box<Self>, stop: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.poll(stop).await })
    }
}

impl TelegramConnector {
    /// Runs until `stop`: identifies the bot, syncs the command menu, then polls.
    pub async fn poll(self, stop: CancellationToken) {
        self.health.register(NAME);
        let Some(me) = self.identify(&stop).await else { return };
        if self.command_sync {
            self.sync_commands().await;
        }
        let mut offset: i64 = match self.gateway.cursor(NAME, CURSOR_KEY).await {
            Ok(v) => v.and_then(|s| s.parse().ok()).unwrap_or(0),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stored Telegram offset; Telegram resends what was not confirmed");
                0
            }
        };
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut conflict = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
        loop {
            let result = tokio::select! {
                r = self.bot.get_updates(offset, self.config.poll) => r,
                _ = stop.cancelled() => return,
            };
            let wait = match result {
                Ok(updates) => {
                    backoff.reset();
                    conflict.reset();
                    self.health.healthy(NAME, format!("polling as @{}", me.username));
                    let Some(next) = updates.iter().map(|u| u.id + 1).max() else { continue };
                    match self.store_batch(&me, updates, next).await {
                        Ok(()) => {
                            offset = next;
                            continue;
                        }
                        Err(e) => {
                            // Not stored, so not acknowledged: the same updates come again.
                            self.health.degrade(NAME, format!("cannot store received messages: {e}"));
                            backoff.next_wait()
                        }
                    }
                }
                Err(Error::Conflict(_)) => {
                    let wait = conflict.next_wait();
                    let why = format!(
                        "another client is polling this bot token (409 Conflict); stop the other instance. Retrying in {}s",
                        wait.as_secs()
                    );
                    tracing::warn!(attempts = conflict.failures(), "{why}");
                    self.health.degrade(NAME, why);
                    wait
                }
                Err(Error::InvalidToken(_)) => {
                    let wait = conflict.next_wait();
                    self.health.degrade(NAME, "Telegram rejected the bot token (AGENT_RUNTIME_TELEGRAM_TOKEN)");
                    tracing::error!(retry_in_s = wait.as_secs(), "Telegram rejected the bot token");
                    wait
                }
                Err(e) => {
                    let err = classify(&e);
                    let wait = err.retry_after.unwrap_or_else(|| backoff.next_wait());
                    tracing::warn!(error = %err.message, retry_in_ms = wait.as_millis() as u64, "Telegram polling failed");
                    self.health.degrade(NAME, format!("polling failed: {}", err.message));
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// `getMe`, retried with backoff until it answers (or `stop`).
    async fn identify(&self, stop: &CancellationToken) -> Option<Me> {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        loop {
            let wait = tokio::select! {
                r = self.bot.get_me() => match r {
                    Ok(me) => {
                        tracing::info!(bot = %me.username, "Telegram connected");
                        return Some(me);
                    }
                    Err(e) => {
                        let err = classify(&e);
                        let wait = backoff.next_wait();
                        tracing::warn!(error = %err.message, retry_in_s = wait.as_secs(), "Telegram getMe failed");
                        self.health.degrade(NAME, format!("cannot reach the Bot API: {}", err.message));
                        wait
                    }
                },
                _ = stop.cancelled() => return None,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return None,
            }
        }
    }

    /// Publishes the command menu (`-` becomes `_`; Telegram allows `[a-z0-9_]`).
    async fn sync_commands(&self) {
        let commands: Vec<(String, String)> = COMMANDS
            .iter()
            .map(|c| (c.name.replace('-', "_"), c.about.chars().take(256).collect()))
            .filter(|(name, _)| name.len() <= 32 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
            .collect();
        match self.bot.set_my_commands(&commands).await {
            Ok(_) => tracing::info!("Telegram command menu published"),
            Err(e) => tracing::warn!(error = %classify(&e).message, "could not publish the Telegram command menu"),
        }
    }

    /// Downloads, stores (with the next offset), acknowledges callback
    /// queries and hands the new messages to processing.
    async fn store_batch(&self, me: &Me, updates: Vec<Update>, next: i64) -> Result<(), GatewayError> {
        let mut arrivals = Vec::new();
        let mut callbacks = Vec::new();
        for u in updates {
            match u.kind {
                UpdateKind::Message(m) => {
                    if let Some(a) = self.message(me, &m).await? {
                        arrivals.push(a);
                    }
                }
                UpdateKind::CallbackQuery(q) => {
                    if let Some(a) = press(me, &q) {
                        arrivals.push(a);
                    }
                    callbacks.push(q.id);
                }
                UpdateKind::Other(kind) => tracing::debug!(%kind, "ignored a Telegram update of another kind"),
            }
        }
        let cursor = Cursor { connector: NAME.into(), key: CURSOR_KEY.into(), value: next.to_string() };
        let new = self.gateway.ingest(arrivals, Some(cursor)).await?;
        // Stored: now the button presses may be acknowledged (the outcome edits the message).
        for id in callbacks {
            if let Err(e) = self.bot.answer_callback_query(&id).await {
                tracing::debug!(error = %classify(&e).message, "could not answer a callback query (it may be too old)");
            }
        }
        self.dispatcher.submit(new).await;
        Ok(())
    }

    /// A chat message as an arrival (`None`: not for us — bots, service
    /// messages, empty). Its files are taken in only as far as the gateway
    /// allows, each streamed straight to disk.
    async fn message(&self, me: &Me, m: &Message) -> Result<Option<Arrival>, GatewayError> {
        let Some(from) = m.from.as_ref().filter(|u| !u.is_bot) else { return Ok(None) };
        let text = m.text.as_deref().or(m.caption.as_deref()).unwrap_or("").trim().to_string();
        let mut refs = Vec::new();
        if let Some(d) = &m.document {
            let name = d.file_name.clone().unwrap_or_else(|| "document".into());
            refs.push(FileRef { id: d.file.file_id.clone(), name, size: d.file.file_size });
        }
        if let Some(p) = m.photo.iter().max_by_key(|p| p.file_size) {
            refs.push(FileRef { id: p.file_id.clone(), name: format!("photo-{}.jpg", p.file_unique_id), size: p.file_size });
        }
        if text.is_empty() && refs.is_empty() {
            return Ok(None);
        }
        let meta = InboundMeta { bot_name: Some(me.username.clone()), message_id: Some(m.message_id.to_string()), ..Default::default() };
        let msg = Inbound {
            chat: chat_ref(&m.chat),
            from_user_id: from.id.to_string(),
            display_name: display_name(&m.chat, from),
            text,
            kind: if m.chat.is_private() { ChatKind::Private } else { ChatKind::Group },
            mentioned: addressed(me, m),
            dedupe_key: format!("{}:{}", m.chat.id, m.message_id),
            trace_id: TraceId::random(),
            meta,
        };
        if refs.is_empty() {
            return Ok(Some(Arrival::text(msg)));
        }
        let mut intake = self.gateway.intake(&msg, self.attachment_max_bytes).await?;
        for f in &refs {
            let Some(mut sink) = intake.file(&f.name, Some(f.size)).await else { continue };
            let fetched = self.download(f, &mut sink).await;
            sink.finish(fetched).await;
        }
        Ok(Some(intake.into_arrival(msg)))
    }

    /// Streams one attachment into `sink`, which stops it at the gateway's bounds.
    async fn download(&self, f: &FileRef, sink: &mut Sink<'_>) -> Result<(), String> {
        let mut file = self.bot.download(&f.id).await.map_err(|e| format!("download failed: {e}"))?;
        while let Some(chunk) = file.chunk().await.map_err(|e| format!("download failed: {e}"))? {
            sink.write(&chunk).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn chat_ref(chat: &Chat) -> ChatRef {
    ChatRef { connector: NAME.to_string(), external_id: chat.id.to_string() }
}

/// A group's title, else the sender's full name.
fn display_name(chat: &Chat, from: &User) -> String {
    chat.title().map_or_else(|| from.full_name(), str::to_string)
}

/// Whether `m` is addressed to the bot: an `@handle` mention (any case), a
/// `text_mention` of the bot, in the text or the caption, or a reply to
/// one of the bot's messages.
fn addressed(me: &Me, m: &Message) -> bool {
    let handle = format!("@{}", me.username);
    m.entities().iter().any(|(e, text)| match e.kind.as_str() {
        "mention" => text.eq_ignore_ascii_case(&handle),
        "text_mention" => e.user.as_ref().is_some_and(|u| u.id == me.id),
        _ => false,
    }) || m.reply_to_message.as_ref().and_then(|r| r.from.as_ref()).is_some_and(|u| u.id == me.id)
}

/// A button press as an arrival: its data is the text, and the message that
/// carried the button is recorded (the outcome edits it).
fn press(me: &Me, q: &CallbackQuery) -> Option<Arrival> {
    let (data, message) = (q.data.as_ref()?, q.message.as_ref()?);
    let chat = &message.chat;
    let msg = Inbound {
        chat: chat_ref(chat),
        from_user_id: q.from.id.to_string(),
        display_name: display_name(chat, &q.from),
        text: data.clone(),
        kind: if chat.is_private() { ChatKind::Private } else { ChatKind::Group },
        mentioned: true,
        dedupe_key: format!("cb:{}", q.id),
        trace_id: TraceId::random(),
        meta: InboundMeta { bot_name: Some(me.username.clone()), pressed: Some(message.message_id.to_string()), ..Default::default() },
    };
    Some(Arrival::text(msg))
}
