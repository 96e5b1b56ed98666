//! Discord's REST API for the outbound side, over our own small client:
//! serenity's errors drop the `retry_after` of a 429 (and its rate limiter
//! cannot be aimed at another server), so replies use four plain calls
//! whose status, Discord error code and `retry_after` we read ourselves.

use super::MAX_MESSAGE;
use crate::BoxFuture;
use crate::connectors::{char_len, split_message};
use crate::domain::{Button, ChatRef, OutboundMessage};
use crate::gateway::Sink;
use crate::outbox::{Delivered, PublishError, Publisher};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// A reply to a slash command is the interaction's own response, edited in
/// place: `reply_to` then holds `interaction:<application id>:<token>`
/// (the token is valid for 15 minutes; after that the reply is a message).
pub const INTERACTION_PREFIX: &str = "interaction:";

/// Discord's REST API with the bot token.
#[derive(Clone)]
pub struct DiscordRest {
    client: reqwest::Client,
    base: String,
    auth: String,
}

impl DiscordRest {
    /// A client for `base` (`https://discord.com`, or a test server).
    pub fn new(base: &str, token: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("DiscordBot (https://github.com/agent-runtime, ", env!("CARGO_PKG_VERSION"), ")"))
            .build()
            .map_err(|e| format!("discord HTTP client: {e}"))?;
        Ok(Self { client, base: base.trim_end_matches('/').to_string(), auth: format!("Bot {token}") })
    }

    /// Calls `path` (under `/api/v10/`) with a JSON body; a non-2xx answer
    /// becomes the outbox's kind of error.
    pub async fn call(&self, method: Method, path: &str, body: Value, bot_auth: bool) -> Result<Value, PublishError> {
        let mut req = self.client.request(method, format!("{}/api/v10/{path}", self.base));
        if !body.is_null() {
            req = req.json(&body);
        }
        if bot_auth {
            req = req.header(reqwest::header::AUTHORIZATION, &self.auth);
        }
        let resp = req.send().await.map_err(|e| PublishError::transient(format!("discord: {}", e.without_url())))?;
        let status = resp.status();
        let header_wait = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<f64>().ok());
        let text = resp.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let code = json["code"].as_u64();
        let what = json["message"].as_str().map_or_else(|| status.to_string(), |m| format!("{} {m}", status.as_u16()));
        let message = match code {
            Some(c) => format!("discord: {what} (code {c})"),
            None => format!("discord: {what}"),
        };
        Err(match status.as_u16() {
            429 => {
                let secs = json["retry_after"].as_f64().or(header_wait).unwrap_or(1.0).clamp(0.0, 3600.0);
                PublishError::rate_limited(message, Duration::from_secs_f64(secs))
            }
            408 | 500..=599 => PublishError::transient(message),
            _ => PublishError::permanent(message),
        })
    }
}

impl DiscordRest {
    /// Streams an attachment into `sink`, which stops it at the gateway's bounds.
    pub async fn download(&self, url: &str, sink: &mut Sink<'_>) -> Result<(), String> {
        let mut resp = self.client.get(url).send().await.map_err(|e| format!("download failed: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("download failed: HTTP {}", resp.status()));
        }
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("download failed: {}", e.without_url()))? {
            sink.write(&chunk).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Delivers outbox rows to Discord channels.
#[derive(Clone)]
pub struct DiscordPublisher {
    rest: DiscordRest,
}

fn components(buttons: &[Button]) -> Value {
    if buttons.is_empty() {
        return json!([]);
    }
    let row: Vec<Value> = buttons
        .iter()
        .map(|b| {
            // 3 green, 4 red, 2 grey.
            let style = if b.data.starts_with("approve:") {
                3
            } else if b.data.starts_with("deny:") {
                4
            } else {
                2
            };
            json!({"type": 2, "style": style, "label": b.label, "custom_id": b.data})
        })
        .collect();
    json!([{"type": 1, "components": row}])
}

/// Adds a nonce naming part `part` of outbox row `msg` to a channel message,
/// with `enforce_nonce`: Discord then answers a second create with the same
/// nonce (from the same bot, within a few minutes) with the message it
/// already made, so the outbox's resend after a crash between the send and
/// the mark-sent does not post twice. The nonce is at most 25 characters:
/// the row id, the row's creation time (so a restored or fresh database
/// reusing ids does not collide) and the part.
fn nonce(msg: &OutboundMessage, part: usize) -> impl Fn(Value) -> Value {
    let mut nonce = format!("{}.{}.{part}", msg.id.0, msg.created_at.rem_euclid(1_000_000_000));
    if nonce.len() > 25 {
        nonce = format!("{}.{part}", msg.id.0);
    }
    move |mut body| {
        body["nonce"] = json!(nonce);
        body["enforce_nonce"] = json!(true);
        body
    }
}

/// A permanent refusal of an edit or interaction response (the message is
/// gone, not ours, or the token expired): the answer is sent as a message instead.
fn gone(e: &PublishError) -> bool {
    !e.retryable && e.retry_after.is_none()
}

impl DiscordPublisher {
    /// A publisher over `rest`.
    pub fn new(rest: DiscordRest) -> Self {
        Self { rest }
    }

    async fn deliver(&self, msg: &OutboundMessage) -> Result<Delivered, PublishError> {
        let channel = msg.chat.external_id.as_str();
        if channel.is_empty() || !channel.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PublishError::permanent(format!("discord: {channel:?} is not a Discord channel id")));
        }
        if let Some(id) = msg.options.edit_of.as_deref() {
            // A decision taken with a button replaces the message that carried it (and its buttons).
            let text: String = msg.body.chars().take(MAX_MESSAGE).collect();
            let body = json!({"content": text, "components": []});
            match self.rest.call(Method::PATCH, &format!("channels/{channel}/messages/{id}"), body, true).await {
                Ok(_) => return Ok(Delivered { platform_message_id: Some(id.to_string()) }),
                Err(e) if gone(&e) => {
                    tracing::debug!(error = %e.message, "the message to edit is gone; sending the outcome as a new message")
                }
                Err(e) => return Err(e),
            }
        }
        let interaction = msg.options.reply_to.as_deref().and_then(|r| r.strip_prefix(INTERACTION_PREFIX)).and_then(|r| r.split_once(':'));
        let reply_to = msg.options.reply_to.as_deref().filter(|r| r.bytes().all(|b| b.is_ascii_digit()));
        let parts = split_message(&msg.body, MAX_MESSAGE, char_len);
        let last = parts.len().saturating_sub(1);
        let mut delivered = None;
        for (i, part) in parts.into_iter().enumerate().skip(msg.parts_sent as usize) {
            let mut body = json!({"content": part, "allowed_mentions": {"parse": []}});
            // A resend of this part (after a crash between Discord taking it and the
            // outbox marking it sent) returns the message already created.
            let once = nonce(msg, i);
            if i == last && !msg.options.buttons.is_empty() {
                body["components"] = components(&msg.options.buttons);
            }
            let sent = match interaction {
                Some((app, token)) => {
                    // The slash command's deferred response, then followups; once the token has expired, plain messages.
                    let (method, path) = if i == 0 {
                        (Method::PATCH, format!("webhooks/{app}/{token}/messages/@original"))
                    } else {
                        (Method::POST, format!("webhooks/{app}/{token}"))
                    };
                    match self.rest.call(method, &path, body.clone(), false).await {
                        Err(e) if gone(&e) => {
                            tracing::debug!(error = %e.message, "the interaction expired; answering with a message");
                            self.rest.call(Method::POST, &format!("channels/{channel}/messages"), once(body), true).await
                        }
                        other => other,
                    }
                }
                None => {
                    if let (0, Some(to)) = (i, reply_to) {
                        body["message_reference"] = json!({"message_id": to, "fail_if_not_exists": false});
                    }
                    self.rest.call(Method::POST, &format!("channels/{channel}/messages"), once(body), true).await
                }
            };
            match sent {
                Ok(m) => delivered = m["id"].as_str().map(str::to_string).or(delivered),
                Err(e) => return Err(e.after_parts(i as u32)),
            }
        }
        Ok(Delivered { platform_message_id: delivered })
    }
}

impl Publisher for DiscordPublisher {
    fn publish<'a>(&'a self, msg: &'a OutboundMessage) -> BoxFuture<'a, Result<Delivered, PublishError>> {
        Box::pin(self.deliver(msg))
    }

    fn typing<'a>(&'a self, chat: &'a ChatRef) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let channel = chat.external_id.as_str();
            if channel.is_empty() || !channel.bytes().all(|b| b.is_ascii_digit()) {
                return;
            }
            if let Err(e) = self.rest.call(Method::POST, &format!("channels/{channel}/typing"), Value::Null, true).await {
                tracing::debug!(error = %e.message, "discord: typing indicator failed");
            }
        })
    }
}
