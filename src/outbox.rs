//! Durable outbound delivery. Every message is an outbox row first; this
//! worker hands due rows to the [`Publisher`] of their connector, retries
//! transient failures with exponential backoff up to a maximum, and records
//! an honest status (`sent`, or `failed` with the last error).
//!
//! Delivery is at least once: a crash between a platform's acceptance and
//! the `sent` update sends that one message again on restart.

use crate::BoxFuture;
use crate::clock::SharedClock;
use crate::config::OutboxConfig;
use crate::domain::{ChatRef, OutboundMessage};
use crate::runtime::Supervisor;
use crate::store::{RetryPolicy, Store, StoreError};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A delivered message.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    /// The platform's id of the message, if it has one.
    pub platform_message_id: Option<String>,
}

/// A failed delivery.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    /// What went wrong.
    pub message: String,
    /// Whether trying again later may work (rate limits, timeouts, 5xx).
    pub retryable: bool,
    /// The platform asked us to wait this long (a rate limit): the message
    /// is deferred by that much and the attempt is not counted.
    pub retry_after: Option<Duration>,
    /// Parts of a split message delivered before the failure (a retry
    /// starts after them).
    pub parts_sent: u32,
}

impl PublishError {
    /// A failure that may pass (timeouts, 5xx, connection errors).
    pub fn transient(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true, retry_after: None, parts_sent: 0 }
    }
    /// A failure that will not pass (chat not found, bot blocked, bad request).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false, retry_after: None, parts_sent: 0 }
    }
    /// The platform's rate limit: try again after `wait`.
    pub fn rate_limited(message: impl Into<String>, wait: Duration) -> Self {
        Self { message: message.into(), retryable: true, retry_after: Some(wait), parts_sent: 0 }
    }
    /// Records how many parts went out before this failure.
    pub fn after_parts(mut self, parts_sent: u32) -> Self {
        self.parts_sent = parts_sent;
        self
    }
}

/// Sends outbound messages to one platform.
pub trait Publisher: Send + Sync + 'static {
    /// Delivers one message.
    fn publish<'a>(&'a self, msg: &'a OutboundMessage) -> BoxFuture<'a, Result<Delivered, PublishError>>;

    /// Shows the chat that an answer is being written (Telegram's and
    /// Discord's typing indicator); best effort, nothing where there is none.
    fn typing<'a>(&'a self, _chat: &'a ChatRef) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// The publisher for chats without a platform connector (the API and CLI
/// chat): delivery makes the message available to
/// `GET /api/v1/chat/messages`, where clients poll for it.
#[derive(Debug, Default)]
pub struct MailboxPublisher;

impl Publisher for MailboxPublisher {
    fn publish<'a>(&'a self, _msg: &'a OutboundMessage) -> BoxFuture<'a, Result<Delivered, PublishError>> {
        Box::pin(async { Ok(Delivered::default()) })
    }
}

/// The publisher of a platform connector that is not running in this
/// process (turned off, or not configured): every message fails for good
/// with the reason, instead of being "delivered" to the mailbox, which no
/// one reads for a platform chat.
#[derive(Debug)]
pub struct OfflinePublisher {
    reason: String,
}

impl OfflinePublisher {
    /// Fails every message of `connector`, saying `why` it is not running.
    pub fn new(connector: &str, why: &str) -> Self {
        Self { reason: format!("not delivered: the {connector} connector is not running ({why})") }
    }
}

impl Publisher for OfflinePublisher {
    fn publish<'a>(&'a self, _msg: &'a OutboundMessage) -> BoxFuture<'a, Result<Delivered, PublishError>> {
        Box::pin(async { Err(PublishError::permanent(self.reason.clone())) })
    }
}

/// Publishers by connector name, with the mailbox as the fallback.
#[derive(Clone)]
pub struct Publishers {
    by_connector: HashMap<String, Arc<dyn Publisher>>,
    fallback: Arc<dyn Publisher>,
}

impl Default for Publishers {
    fn default() -> Self {
        Self { by_connector: HashMap::new(), fallback: Arc::new(MailboxPublisher) }
    }
}

impl Publishers {
    /// Registers the publisher of `connector`.
    pub fn with(mut self, connector: &str, p: Arc<dyn Publisher>) -> Self {
        self.by_connector.insert(connector.to_string(), p);
        self
    }
    fn get(&self, connector: &str) -> &Arc<dyn Publisher> {
        self.by_connector.get(connector).unwrap_or(&self.fallback)
    }

    /// Shows `chat` a typing indicator (best effort).
    pub async fn typing(&self, chat: &ChatRef) {
        self.get(&chat.connector).typing(chat).await;
    }
}

/// The delivery worker's parts.
#[derive(Clone)]
pub struct Outbox {
    /// The store.
    pub store: Store,
    /// Publishers.
    pub publishers: Publishers,
    /// Retry limits.
    pub config: OutboxConfig,
    /// Time.
    pub clock: SharedClock,
    /// Poked whenever a message is queued.
    pub ready: Arc<Notify>,
    /// Where the loop reports its health (component `outbox`), if anywhere.
    pub health: Option<crate::health::Health>,
}

const BATCH: u32 = 100;
/// Chats delivered to at once.
pub const PARALLEL_CHATS: usize = 16;
const MAX_IDLE: Duration = Duration::from_secs(1);

impl Outbox {
    /// Starts the delivery loop; on shutdown it makes one last pass over due
    /// messages (bounded by `flush_timeout`) before exiting.
    pub fn spawn(self, sup: &Supervisor, flush_timeout: Duration) {
        let token = sup.token().clone();
        if let Some(h) = &self.health {
            h.register_periodic("outbox", MAX_IDLE);
        }
        sup.spawn("outbox", async move {
            loop {
                match (self.deliver_due().await, &self.health) {
                    (Err(StoreError::Closed), _) => return,
                    (Err(e), Some(h)) => h.degrade("outbox", format!("delivery pass failed: {e}")),
                    (Ok(_), Some(h)) => h.beat("outbox"),
                    (_, None) => {}
                }
                let wait = self.idle_wait().await;
                tokio::select! {
                    _ = self.ready.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = token.cancelled() => break,
                }
            }
            match tokio::time::timeout(flush_timeout, self.deliver_due()).await {
                Ok(Ok(n)) => tracing::info!(delivered = n, "outbox flushed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "outbox flush failed"),
                Err(_) => tracing::warn!("outbox flush timed out; pending messages stay queued"),
            }
        });
    }

    async fn idle_wait(&self) -> Duration {
        match self.store.next_outbound_due().await {
            Ok(Some(at)) => Duration::from_millis((at - self.clock.now_ms()).clamp(0, MAX_IDLE.as_millis() as i64) as u64),
            _ => MAX_IDLE,
        }
    }

    /// Delivers every message due now; returns how many were sent. Chats are
    /// served side by side (at most [`PARALLEL_CHATS`] at once), each chat's
    /// messages in order, so one slow platform or chat holds up no other.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let mut sent = 0;
        loop {
            let due = self.store.due_outbound(self.clock.now_ms(), BATCH).await?;
            let n = due.len();
            let mut chats: Vec<Vec<OutboundMessage>> = Vec::new();
            for msg in due {
                match chats.iter_mut().find(|c| c[0].chat == msg.chat) {
                    Some(c) => c.push(msg),
                    None => chats.push(vec![msg]),
                }
            }
            let mut lanes =
                futures_util::stream::iter(chats.into_iter().map(|msgs| self.deliver_in_order(msgs))).buffer_unordered(PARALLEL_CHATS);
            while let Some(r) = lanes.next().await {
                sent += r?;
            }
            if n < BATCH as usize {
                return Ok(sent);
            }
        }
    }

    /// One chat's due messages, in order; stops at the first that is not
    /// delivered (the rest wait for it, keeping the chat's order).
    async fn deliver_in_order(&self, msgs: Vec<OutboundMessage>) -> Result<usize, StoreError> {
        let mut sent = 0;
        for msg in msgs {
            if !self.deliver(&msg).await? {
                break;
            }
            sent += 1;
        }
        Ok(sent)
    }

    #[tracing::instrument(skip_all, fields(outbox_id = %msg.id, chat = %msg.chat, attempt = msg.attempts + 1))]
    async fn deliver(&self, msg: &OutboundMessage) -> Result<bool, StoreError> {
        let result = self.publishers.get(&msg.chat.connector).publish(msg).await;
        let now = self.clock.now_ms();
        match result {
            Ok(d) => {
                self.store.mark_outbound_sent(msg.id, d.platform_message_id, now).await?;
                crate::metrics::metrics().message(&msg.chat.connector, "outbound", "sent");
                Ok(true)
            }
            Err(e) if e.retry_after.is_some() => {
                let wait = e.retry_after.unwrap_or_default().max(Duration::from_millis(100));
                tracing::info!(error = %e.message, wait_ms = wait.as_millis() as u64, "rate limited by the platform; delivery deferred");
                self.store.defer_outbound(msg.id, e.parts_sent, e.message, wait, now).await?;
                crate::metrics::metrics().message(&msg.chat.connector, "outbound", "rate_limited");
                Ok(false)
            }
            Err(e) => {
                let attempt = msg.attempts + 1;
                let give_up = !e.retryable || attempt >= self.config.max_attempts;
                let delay = RetryPolicy { base: self.config.retry_base, max: self.config.retry_max }.delay(attempt);
                tracing::warn!(error = %e.message, give_up, "delivery failed");
                self.store.mark_outbound_attempt_failed(msg.id, e.message, e.parts_sent, give_up, delay, now).await?;
                crate::metrics::metrics().message(&msg.chat.connector, "outbound", if give_up { "failed" } else { "retried" });
                Ok(false)
            }
        }
    }
}
